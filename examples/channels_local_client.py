"""Channels between short-lived and long-running clients: the spec's
"workflow designer" example, made to run in one script.

    python examples/channels_local_client.py              # workers as threads
    python examples/channels_local_client.py --processes  # workers as processes

1. A web request (a short-lived client) scatters a small task graph with a
   run id onto the channel 'input', flushes, and leaves.
2. A long-running client follows 'input'; for each graph it submits
   ``run_on_remote`` (keyed by the run id) and appends that future to
   'output'.  ``run_on_remote`` runs on a worker with ``local_client`` and
   appends the graph's own futures to 'output' as well.
3. ``hold_completed_futures``, another worker task, follows 'output'.
4. A later short-lived client snapshots 'output' to report on the runs.

The functions are the spec's (import changed to trioflow; ``c._get(dsk,
keys)`` is ``c.get(dsk, keys, sync=False)``), with the hour-long sleep cut
short and the loops ended by ``stop()``.
"""
import sys

from trioflow import Client, Future, LocalCluster, local_client, wait


def func(x, y):
    return x + y


def func2(x):
    return 2 * x


def run_on_remote(dsk):
    with local_client() as c:
        output_channel = c.channel("output")

        keys = list(dsk.keys())
        keys.sort()
        # non-blocking get at first, so that the constituent futures can go on the channel
        futures = c.get(dsk, keys, sync=False)
        for key in keys:
            future = Future(key, c)
            output_channel.append(future)
        # blocking get to make sure the work is done
        data = c.get(dsk, keys)
        output_channel.flush()
    return data


def hold_completed_futures():
    held = 0
    with local_client() as c:
        output_channel = c.channel("output")
        for future in output_channel:
            print("holding a future")
            wait([future])  # the spec holds each future for an hour
            held += 1
            if future.status != "finished":
                print(future.status)
    return held


def web_request(address, run_id, x):
    """Step 2: a client that lives for one request."""
    client = Client(address)
    chan = client.channel("input")
    dask_graph = {
        f"{run_id}-tracking_key_1": (func, x, 1),
        f"{run_id}-tracking_key_2": (func2, f"{run_id}-tracking_key_1"),
    }
    future_list = client.scatter([(run_id, dask_graph)])
    chan.append(future_list[0])
    chan.flush()
    client.close()


if __name__ == "__main__":
    with LocalCluster(n_workers=2, threads_per_worker=2, dashboard_address=None,
                      processes="--processes" in sys.argv[1:]) as cluster:
        address = cluster.scheduler_address

        for i, x in enumerate([10, 20]):
            web_request(address, f"workflow-run-{i}", x)

        client = Client(address)
        input_channel = client.channel("input")
        output_channel = client.channel("output")
        main_future = client.submit(hold_completed_futures)
        input_channel.stop()  # this demo serves only the two requests above

        runs = []
        for future in input_channel:
            # we know this future is just shared data, so we call result
            workflow_run_id, dask_graph = future.result()
            print("received", workflow_run_id, sorted(dask_graph))
            fut = client.submit(run_on_remote, dask_graph, pure=True, key=workflow_run_id)
            output_channel.append(fut)
            runs.append(fut)
        for fut in runs:
            print(fut.key, "->", fut.result())
        output_channel.flush()
        output_channel.stop()
        print("hold_completed_futures saw", main_future.result(), "futures")
        client.close()

        # step 4: a later short-lived client reports on the runs
        with Client(address) as reporter:
            futures_snapshot = list(reporter.channel("output").futures)
            wait(futures_snapshot)
            for future in futures_snapshot:
                print(future.key, future.status)
