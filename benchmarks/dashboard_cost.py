"""What a browser open on the dashboard's status page costs the scheduler.

The shared harness's map_tiny and scheduler_scale workloads (2 workers x 1
thread, worker processes), each measured three ways, interleaved round by
round so drift in the machine's speed hits each alike:

    off      dashboard_address=None (what ../shared/bench measures)
    served   the dashboard listens, no page is open
    open     headless Chromium shows /status for the whole measurement

Prints tasks per second (median of --repeat) and each way's ratio to "off".
Needs chromium and chromedriver (Debian: apt-get install chromium
chromium-driver) and selenium.

    python benchmarks/dashboard_cost.py --repeat 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from trioflow import Client, LocalCluster

WAYS = ("off", "served", "open")


def inc(x):
    return x + 1


def _browser(profile_dir):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def measure(way: str, n: int, processes: bool) -> float:
    address = None if way == "off" else "127.0.0.1:0"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=processes,
                      dashboard_address=address) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        client.gather(client.map(inc, range(4), pure=False))  # warm connections
        browser = None
        try:
            if way == "open":
                browser = _browser(tempfile.mkdtemp(prefix="trioflow-bench-chromium-"))
                browser.get(client.dashboard_link)
                deadline = time.monotonic() + 30
                while not browser.find_element("tag name", "body").get_attribute("data-updates"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the status page got no update in 30 s")
                    time.sleep(0.05)
            t0 = time.perf_counter()
            results = client.gather(client.map(inc, range(n)))
            elapsed = time.perf_counter() - t0
            assert sum(results) == n * (n - 1) // 2 + n
            if browser is not None:  # the page was live throughout
                assert int(browser.find_element("tag name", "body")
                           .get_attribute("data-updates")) >= 1
        finally:
            if browser is not None:
                browser.quit()
    return n / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--map-tiny", type=int, default=10_000)
    parser.add_argument("--scale", type=int, default=50_000)
    parser.add_argument("--no-processes", dest="processes", action="store_false")
    args = parser.parse_args(argv)
    for name, n in (("map_tiny", args.map_tiny), ("scheduler_scale", args.scale)):
        if n <= 0:
            continue
        rates = {way: [] for way in WAYS}
        for _ in range(args.repeat):
            for way in WAYS:
                rates[way].append(measure(way, n, args.processes))
        base = statistics.median(rates["off"])
        for way in WAYS:
            median = statistics.median(rates[way])
            print(f"{name:16} {way:7} {median:9.0f} tasks/s  ({median / base:6.1%} of off)"
                  f"  min..max {min(rates[way]):.0f}..{max(rates[way]):.0f}", flush=True)


if __name__ == "__main__":
    main()
