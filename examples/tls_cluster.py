"""An encrypted cluster: every connection between the processes is TLS.

    python examples/tls_cluster.py                  # a throwaway certificate (needs cryptography)
    python examples/tls_cluster.py CA CERT KEY      # your own PEM files, one certificate for all roles

The script starts a scheduler and two worker processes that speak wss://,
moves an array from one worker to the other, and shows that a client without
the certificate is turned away while the cluster carries on.
"""
from __future__ import annotations

import sys

from trioflow import Client, LocalCluster, ProtocolError, Security


def checksum(values) -> float:
    return float(sum(values))


def security_from_argv(argv) -> Security:
    if not argv:
        return Security.temporary()
    ca, cert, key = argv
    roles = ("client", "scheduler", "worker")
    return Security(tls_ca_file=ca, require_encryption=True,
                    **{f"tls_{role}_cert": cert for role in roles},
                    **{f"tls_{role}_key": key for role in roles})


def main() -> None:
    security = security_from_argv(sys.argv[1:])
    with LocalCluster(n_workers=2, threads_per_worker=1, security=security,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        first, second = sorted(client.scheduler_info()["workers"])
        print(f"scheduler {cluster.scheduler_address}")
        print(f"workers   {first}, {second}")

        [values] = client.scatter([list(range(1_000_000))], workers=[first])
        total = client.submit(checksum, values, workers=[second]).result()
        print(f"sum computed on the second worker from data on the first: {total:.0f}")

        try:
            Client(cluster.scheduler_address, timeout=5)
        except ProtocolError as exc:
            print(f"a client without the certificate is refused: {exc}")
        print("the cluster still answers:", client.submit(checksum, [1, 2, 3]).result())


if __name__ == "__main__":
    main()
