"""dask.distributed's client calls beyond the spec (issue 12, points 4 and 8):
``client.sync``, ``client.scheduler``, awaiting the coordination
primitives, ``dir()`` of actors and clients, ``get_task_stream``, and
errors that say what to use instead of what trioflow has not."""

import asyncio
import os
import time
import traceback

import pytest
import trio

import trioflow
from trioflow import Client, Event, Lock, Queue, Semaphore, Variable, get_task_stream
from trioflow.errors import TimeoutError
from _tasks import print_and_warn
from _util import async_client, cli_scheduler, cli_worker, wait_until


class Counter:
    kind = "counter"

    def __init__(self):
        self.count = 0
        self._hidden = None

    def increment(self):
        self.count += 1
        return self.count


def inc(x):
    return x + 1


async def asyncio_add(x, y):
    await asyncio.sleep(0.01)
    return x + y


async def trio_add(x, y):
    await trio.sleep(0.01)
    return x + y


# --- client.sync and client.scheduler -----------------------------------------


def test_sync_runs_asyncio_and_trio_coroutines_in_the_clients_loop(inproc_client):
    client = inproc_client
    assert client.sync(asyncio_add, 1, 2) == 3
    assert client.sync(trio_add, 1, y=3) == 4
    assert client.sync(inc, 1) == 2  # a plain function's value comes back as it is
    with pytest.raises(TimeoutError, match="longer than"):
        client.sync(asyncio.sleep, 30, callback_timeout=0.2)
    assert client.submit(inc, 1).result() == 2  # the loop goes on after the timeout


def test_scheduler_rpc_has_the_address_and_identity(inproc_client):
    client = inproc_client
    assert client.scheduler.address == client.scheduler_address
    identity = client.sync(client.scheduler.identity)
    assert identity["type"] == "Scheduler"
    assert set(identity["workers"]) == set(client.scheduler_info()["workers"])
    future = client.submit(inc, 1)
    future.result()
    assert set(client.sync(client.scheduler.who_has, [future.key])) == {future.key}
    with pytest.raises(AttributeError, match="run_on_scheduler"):
        client.scheduler.broadcast


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_the_async_client_returns_awaitables(anyio_backend):
    async with async_client(n_workers=1, threads_per_worker=1) as client:
        add = trio_add if anyio_backend == "trio" else asyncio_add
        assert await client.sync(add, 2, 3) == 5  # dask: the awaitable itself
        assert (await client.scheduler.identity())["address"] == client.scheduler_address
        q = await Queue("q-await")
        await q.put(5)
        assert await q.get() == 5
        v = await Variable("v-await")
        await v.set(7)
        assert await v.get() == 7
        lock = await Lock("lock-await")
        async with lock:
            assert await lock.locked()
        event = await Event("event-await")
        await event.set()
        assert await event.wait(5)
        semaphore = await Semaphore(max_leases=2, name="sem-await")
        assert await semaphore.acquire()
        await semaphore.release()
        # calls made of several round trips await as one
        futures = client.map(inc, range(3))
        assert await client.gather(futures) == [1, 2, 3]
        assert "client" in await client.get_versions()
        assert sum((await client.nbytes()).values()) > 0
        assert await client.call_stack() == {}
        async with get_task_stream(client=client) as ts:
            await client.submit(inc, 10, pure=False)
        assert any(r["key"].startswith("inc") for r in ts.data)
        assert isinstance(await client.profile(), dict)


def test_get_task_stream_records_the_block(inproc_client):
    before = inproc_client.submit(inc, 0, pure=False)
    before.result()
    with get_task_stream() as ts:
        inproc_client.gather(inproc_client.map(inc, range(5), pure=False))
    keys = {r["key"] for r in ts.data}
    assert len(keys) == 5 and before.key not in keys


# --- names ------------------------------------------------------------------------


def test_dir_of_an_actor_lists_its_attributes_and_methods(inproc_client):
    counter = inproc_client.submit(Counter, actor=True).result()
    names = dir(counter)
    assert {"count", "kind", "increment"} <= set(names)
    assert "_hidden" not in names
    assert counter.increment().result() == 1
    assert counter.count == 1


def test_dir_of_a_client_has_no_private_names_and_hints_point_at_public_ones(inproc_client):
    client = inproc_client
    names = dir(client)
    assert "sync" in names and "submit" in names
    assert not [n for n in names if n.startswith("_") and not n.startswith("__")]
    try:
        client.synk
    except AttributeError as exc:
        text = "".join(traceback.format_exception(exc))
    assert "'synk'" in text
    assert "_sync" not in text.splitlines()[-1]


def test_what_trioflow_has_not_says_what_to_use_instead(inproc_client):
    client = inproc_client
    with pytest.raises(AttributeError, match="client.sync"):
        client.loop
    with pytest.raises(AttributeError, match="replicate"):
        client.amm
    with pytest.raises(AttributeError, match="register_worker_plugin"):
        client.register_worker_callbacks
    with pytest.raises(NotImplementedError, match="client.run"):
        client.start_ipython_workers()
    with pytest.raises(NotImplementedError, match="run_on_scheduler"):
        client.start_ipython_scheduler()
    with pytest.raises(ImportError, match="one Lock per resource"):
        from trioflow import MultiLock  # noqa: F401
    with pytest.raises(ImportError, match="upload_file"):
        trioflow.UploadFile
    with pytest.raises(AttributeError):
        trioflow.not_a_name_anywhere


#: the public names of dask.distributed 2026.8 (its ``__all__``) and of its Client
DASK_NAMES = """Actor ActorFuture Adaptive BaseActorFuture CancelledError Client
CompatibleExecutor CondaInstall Environ Event Future InstallPlugin KilledWorker LocalCluster
Lock MultiLock Nanny NannyPlugin PipInstall Queue Reschedule SSHCluster Scheduler
SchedulerPlugin Security Semaphore SpecCluster Status SubprocessCluster TimeoutError
UploadDirectory UploadFile Variable Worker WorkerPlugin as_completed config connect
default_client fire_and_forget futures_of get_client get_task_metadata get_task_stream
get_worker local_client performance_report print progress rejoin rpc secede span sync wait
warn widgets worker_client""".split()
DASK_CLIENT_NAMES = """amm as_current asynchronous benchmark_hardware call_stack cancel close
compute current dashboard_link dump_cluster_state forward_logging futures_of gather get
get_dataset get_events get_executor get_metadata get_scheduler_logs get_task_stream
get_versions get_worker_logs has_what list_datasets log_event loop map nbytes ncores
normalize_collection nthreads persist processing profile publish_dataset rebalance
register_plugin register_worker_callbacks replicate restart restart_workers retire_workers
retry run run_on_scheduler scatter scheduler_info set_metadata shutdown start story submit
subscribe_topic sync unforward_logging unpublish_dataset unregister_scheduler_plugin
unregister_worker_plugin unsubscribe_topic upload_file wait_for_workers who_has
write_scheduler_file""".split()


@pytest.mark.parametrize("name", DASK_NAMES)
def test_every_name_of_dask_distributed_is_here_or_says_what_to_use(name):
    try:
        exec(f"from trioflow import {name}", {})
    except ImportError as exc:
        assert f"trioflow has no {name!r} (dask.distributed has): " in str(exc)
        assert len(str(exc).split(": ", 1)[1]) > 10  # the advice itself


def _lacking(obj, names, says):
    """The names ``obj`` has not; each one's AttributeError must say ``says(name)``."""
    lacking = []
    for name in names:
        try:
            getattr(obj, name)
        except AttributeError as exc:
            assert says(name) in str(exc), name
            lacking.append(name)
    return sorted(lacking)


def test_every_name_of_dasks_client_is_here_or_says_what_to_use(inproc_client):
    lacking = _lacking(inproc_client, DASK_CLIENT_NAMES,
                       lambda name: f"trioflow's Client has no {name!r}: ")
    assert len(lacking) < 10, lacking  # the few docs/dask-compatibility.md lists


#: the public attributes of distributed.Future in 2026.8
DASK_FUTURE_NAMES = """add_done_callback bind_client cancel cancelled client done exception
executor key release result retry status substitute traceback type""".split()


def test_every_name_of_dasks_future_is_here_or_says_what_to_use(inproc_client):
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    lacking = _lacking(future, DASK_FUTURE_NAMES,
                       lambda name: f"trioflow's Future has no {name!r}, which dask's has: ")
    assert lacking == ["bind_client", "executor", "substitute"]
    with pytest.raises(AttributeError, match="^'Future' object has no attribute 'nonsense'$"):
        future.nonsense


#: the public attributes of distributed.Lock and distributed.Semaphore in 2026.8
DASK_LOCK_NAMES = """acquire asynchronous close get_value locked loop register release
scheduler sync""".split()
DASK_SEMAPHORE_NAMES = """acquire asynchronous close get_value loop register release
scheduler sync""".split()


@pytest.mark.parametrize("make, names", [(Lock, DASK_LOCK_NAMES),
                                         (Semaphore, DASK_SEMAPHORE_NAMES)])
def test_every_name_of_dasks_lock_and_semaphore_is_here_or_says_what_to_use(
        inproc_client, make, names):
    primitive = make(client=inproc_client)
    kind = make.__name__
    lacking = _lacking(primitive, names,
                       lambda name: f"trioflow's {kind} has no {name!r}, which dask's has: ")
    assert lacking == ["loop", "register", "scheduler", "sync"]
    assert primitive.asynchronous is False


def test_sync_from_a_closed_client_says_it_is_not_running():
    client = Client(processes=False, n_workers=1, dashboard_address=None)
    client.close()
    with pytest.raises(trioflow.errors.TrioflowError, match="not running"):
        client.sync(asyncio_add, 1, 2)


def test_client_without_an_address_connects_where_dasks_config_says(inproc_client, monkeypatch):
    import dask
    address = inproc_client.scheduler_address
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    with Client() as client:
        assert client.scheduler_address == address and client.cluster is None
        assert client.submit(inc, 1).result(timeout=10) == 2
    with pytest.raises(TypeError, match="scheduler-address"):
        Client(n_workers=2)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    with dask.config.set({"scheduler-address": address}), Client() as client:
        assert client.scheduler_address == address


def test_the_compatibility_page_lists_every_name_trioflow_has_not():
    import pathlib
    from trioflow.client.compat import UNSUPPORTED as client_names
    from trioflow.deploy.compat import UNSUPPORTED as cluster_names
    page = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "dask-compatibility.md")
    text = page.read_text()
    missing = [name for name in [*trioflow._NOT_HERE, *client_names, *cluster_names]
               if f"`{name}`" not in text]
    assert not missing, f"docs/dask-compatibility.md does not mention {missing}"


def test_scheduler_info_has_dasks_fields(inproc_client):
    # the fields dask's scheduler_info() gives, which programs read
    info = inproc_client.scheduler_info()
    workers = info["workers"]
    assert info["type"] == "Scheduler" and info["n_workers"] == len(workers) == 2
    assert info["total_threads"] == 4
    assert info["total_memory"] == sum(w["memory_limit"] for w in workers.values())
    assert 0 < info["started"] <= time.time()
    for worker in workers.values():
        assert worker["type"] == "Worker" and worker["status"] == "running"
        assert isinstance(worker["services"], dict)
        assert {"nthreads", "memory_limit", "name", "resources", "host", "pid"} <= set(worker)
        # the wall-clock time of its last heartbeat, and where it spills
        assert info["started"] - 5 <= worker["last_seen"] <= time.time() + 0.01
        assert os.path.isdir(worker["local_directory"])


def _print_in_a_task(x):
    from trioflow import print
    print("from the task", x)
    return x


def test_print_and_warn_as_dask_names_them(inproc_client, capsys):
    from trioflow import print as dask_print, warn
    assert inproc_client.submit(_print_in_a_task, 7).result(timeout=10) == 7
    assert "from the task 7" in capsys.readouterr().out
    dask_print("here", 1, sep="-")
    assert capsys.readouterr().out == "here-1\n"
    with pytest.warns(RuntimeWarning, match="careful"):
        warn("careful", RuntimeWarning)


def test_print_and_warn_in_a_task_reach_the_client(tmp_path, capsys, check_leaks):
    # a CLI worker: what it prints itself goes to its log, so all this
    # process's streams get is what the scheduler forwarded to the client
    with cli_scheduler(tmp_path, "--no-dashboard") as (_, _, scheduler_file), \
            cli_worker(tmp_path, "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                       "--no-dashboard"), \
            Client(scheduler_file=str(scheduler_file), timeout=30) as client:
        client.wait_for_workers(1, timeout=30)
        out, err = [], []

        def printed():
            captured = capsys.readouterr()
            out.append(captured.out)
            err.append(captured.err)
            return "to stdout|5\n" in "".join(out) and "to stderr 5\n" in "".join(err)

        with pytest.warns(RuntimeWarning, match="careful with 5") as warned:
            assert client.submit(print_and_warn, 5).result(timeout=30) == 5
            wait_until(printed, timeout=30, message="the task's lines printed by the client")
            wait_until(lambda: len(warned) > 0, timeout=30, message="the task's warning")
        assert "to stderr" not in "".join(out)
        # and the worker printed them too, where it runs (its unbuffered stdout
        # and stderr meet in one log, so their pieces may interleave)
        wait_until(lambda: "to stdout" in (tmp_path / "worker.log").read_text(), timeout=30)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_an_asynchronous_client_connects_where_dasks_config_says(anyio_backend,
                                                                       monkeypatch):
    from trioflow import LocalCluster
    async with LocalCluster(n_workers=1, processes=False, asynchronous=True,
                            dashboard_address=None) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        async with Client(asynchronous=True) as client:
            assert client.scheduler_address == cluster.scheduler_address
            assert await client.submit(inc, 1) == 2


def test_bad_values_say_what_was_wrong(inproc_client):
    from trioflow import LocalCluster
    future = inproc_client.submit(inc, 1)
    assert future.result(timeout="10s") == 2  # a duration, as dask takes it
    with pytest.raises(ValueError, match="'zz' as a duration"):
        future.result(timeout="zz")
    with pytest.raises(TypeError, match="number of workers, not 'x'"):
        inproc_client.wait_for_workers("x")
    with pytest.raises(ValueError, match="maxsize"):
        Queue("q-bad", maxsize="a")
    with pytest.raises(ValueError, match="n_workers=.*-1"):
        LocalCluster(n_workers=-1, processes=False, dashboard_address=None)
    with pytest.raises(ValueError, match="threads_per_worker"):
        LocalCluster(n_workers=1, threads_per_worker=0, processes=False, dashboard_address=None)
    assert inproc_client.submit(inc, 2).result() == 3
