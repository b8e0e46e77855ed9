"""Datasets, Future(key, client), run / run_on_scheduler, upload_file, event
logs, metadata and worker plugins."""

import importlib
import os
import uuid
import zipfile

import anyio
import pytest
import trio

from trioflow import Client, Future, WorkerPlugin, get_client, get_worker
from _tasks import inc
from _util import barrier, cli_worker, key_is_forgotten, key_is_held, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


def unique(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def write_module(directory, name, value):
    path = directory / f"{name}.py"
    path.write_text(f"VALUE = {value!r}\n\ndef value():\n    return VALUE\n")
    return path


def module_value(name):
    return importlib.import_module(name).value()


class Recorder(WorkerPlugin):
    name = "recorder"

    def __init__(self, tag="default"):
        self.tag = tag

    def setup(self, worker):
        worker.recorded = [*getattr(worker, "recorded", []), ("setup", self.tag)]

    def teardown(self, worker):
        worker.recorded = [*getattr(worker, "recorded", []), ("teardown", self.tag)]


class AsyncSetup(WorkerPlugin):
    async def setup(self, worker):
        await trio.sleep(0)
        worker.async_setup_done = True


class BrokenSetup(WorkerPlugin):
    def setup(self, worker):
        raise RuntimeError("setup failed on purpose")


def recorded(dask_worker):
    return getattr(dask_worker, "recorded", [])


# ----------------------------------------------------------------------- datasets

def test_publish_forms_list_get_and_unpublish(inproc_client):
    c = inproc_client
    x, y = c.submit(inc, 1), c.submit(inc, 2)
    names = [unique("kw"), unique("named"), unique("mapping")]
    c.publish_dataset(**{names[0]: [x, y]})
    c.publish_dataset(x, name=names[1])
    c.publish_dataset({names[2]: {"a": y}})
    assert set(names) <= set(c.list_datasets())
    assert c.gather(c.get_dataset(names[0])) == [2, 3]
    assert c.get_dataset(names[1]).result(timeout=5) == 2
    assert c.get_dataset(names[2])["a"].result(timeout=5) == 3
    assert [f.result() for f in c.get_dataset([names[1], names[0]])[1]] == [2, 3]

    with pytest.raises(KeyError, match="already exists"):
        c.publish_dataset(x, name=names[1])
    c.publish_dataset(y, name=names[1], override=True)
    assert c.get_dataset(names[1]).result(timeout=5) == 3
    with pytest.raises(ValueError):
        c.publish_dataset(x)  # positional needs name= or a mapping
    with pytest.raises(ValueError):
        c.publish_dataset(name="nothing")

    with pytest.raises(KeyError, match="not found"):
        c.get_dataset(unique("missing"))
    assert c.get_dataset(unique("missing"), default=None) is None
    c.unpublish_dataset(names[0])
    c.unpublish_dataset([names[1], names[2]])
    assert not set(names) & set(c.list_datasets())


def test_datasets_mapping(inproc_client):
    c = inproc_client
    name = unique("mapped")
    c.datasets[name] = c.submit(inc, 10)
    assert name in c.datasets
    assert c.datasets[name].result(timeout=5) == 11
    del c.datasets[name]
    assert name not in c.datasets
    with pytest.raises(KeyError):
        del c.datasets[name]


def test_published_data_outlives_the_publishers_futures(inproc_client):
    c = inproc_client
    name = unique("kept")
    x = c.submit(inc, 41, pure=False)
    key = x.key
    assert x.result(timeout=5) == 42
    c.publish_dataset(x, name=name)
    del x
    barrier(c)
    assert key_is_held(c, key)
    with Client(c.scheduler_address, set_as_default=False) as other:
        got = other.get_dataset(name)
        assert got.result(timeout=5) == 42
        other.unpublish_dataset(name)
        barrier(other)
        assert key_is_held(c, key)  # the other client's future still holds it
        del got
    wait_until(lambda: key_is_forgotten(c, key), message="dataset key forgotten")


def test_dataset_outlives_the_publishing_client(inproc_client):
    c = inproc_client
    name = unique("orphaned")
    with Client(c.scheduler_address, set_as_default=False) as publisher:
        x = publisher.submit(inc, 1, pure=False)
        assert x.result(timeout=5) == 2
        publisher.publish_dataset(x, name=name)
    got = c.get_dataset(name)
    assert got.result(timeout=5) == 2
    c.unpublish_dataset(name)


def test_future_rebuilt_in_another_client(inproc_client):
    c = inproc_client
    x = c.submit(inc, 1, pure=False)
    key = x.key
    with Client(c.scheduler_address, set_as_default=False) as other:
        again = Future(key, other)
        assert again.client is other
        assert again.result(timeout=5) == 2
        x.release()
        barrier(c)
        assert key_is_held(c, key)  # the rebuilt future wants it too
        assert again.result(timeout=5) == 2
        del again
    wait_until(lambda: key_is_forgotten(c, key), message="key forgotten")


# ----------------------------------------------------------------------- run, run_on_scheduler

def test_run_on_workers(inproc_client):
    c = inproc_client
    workers = sorted(c.scheduler_info()["workers"])
    assert c.run(lambda dask_worker: dask_worker.address) == {w: w for w in workers}
    assert c.run(lambda x, y=0: x + y, 1, y=2, workers=[workers[0]]) == {workers[0]: 3}
    assert c.run(lambda dask_worker: dask_worker.nthreads, workers=workers[1]) == {workers[1]: 2}

    async def in_loop(dask_worker):
        await trio.sleep(0)
        return trio.lowlevel.current_trio_token() is dask_worker.trio_token

    assert c.run(in_loop) == {w: True for w in workers}
    with pytest.raises(ZeroDivisionError):
        c.run(lambda: 1 / 0)
    errors = c.run(lambda: 1 / 0, on_error="return")
    assert all(isinstance(e, ZeroDivisionError) for e in errors.values())


def test_run_on_scheduler(inproc_client):
    c = inproc_client

    def count_workers(dask_scheduler):
        return len(dask_scheduler.state.workers)

    assert c.run_on_scheduler(count_workers) == 2
    assert c.run_on_scheduler(lambda a, b: a * b, 6, b=7) == 42

    async def scheduler_address(dask_scheduler=None):
        await trio.sleep(0)
        return dask_scheduler.address

    assert c.run_on_scheduler(scheduler_address) == c.scheduler_address


# ----------------------------------------------------------------------- upload_file

def test_upload_py_then_upload_again_reloads(inproc_client, tmp_path):
    c = inproc_client
    name = unique("uploaded")
    result = c.upload_file(str(write_module(tmp_path, name, 1)))
    workers = set(c.scheduler_info()["workers"])
    assert result == {w: {"status": "OK"} for w in workers}
    assert c.submit(module_value, name, pure=False).result(timeout=5) == 1
    c.upload_file(str(write_module(tmp_path, name, 2)))
    assert c.run(module_value, name) == {w: 2 for w in workers}
    assert c.submit(module_value, name, pure=False).result(timeout=5) == 2


def test_upload_zip_and_import_errors(inproc_client, tmp_path):
    c = inproc_client
    package = unique("zipped")
    archive = tmp_path / f"{package}.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr(f"{package}/__init__.py",
                   "VALUE = 'from zip'\n\ndef value():\n    return VALUE\n")
    c.upload_file(str(archive))
    assert c.submit(module_value, package, pure=False).result(timeout=5) == "from zip"

    broken = tmp_path / f"{unique('broken')}.py"
    broken.write_text("raise ImportError('broken on purpose')\n")
    with pytest.raises(ImportError, match="broken on purpose"):
        c.upload_file(str(broken))


def test_upload_reaches_a_worker_process_that_joins_later(proc_client, tmp_path):
    c = proc_client
    name = unique("late_upload")
    c.upload_file(str(write_module(tmp_path, name, "late")))
    before = set(c.scheduler_info()["workers"])
    with cli_worker(tmp_path, c.scheduler_address, "--nthreads", "1", "--no-nanny"):
        c.wait_for_workers(3, timeout=30)
        (late,) = set(c.scheduler_info()["workers"]) - before
        first_task = c.submit(module_value, name, workers=[late], pure=False)
        assert first_task.result(timeout=20) == "late"


# ----------------------------------------------------------------------- plugins

def test_worker_plugin_setup_replace_and_teardown(inproc_client):
    c = inproc_client
    workers = set(c.scheduler_info()["workers"])
    assert c.register_worker_plugin(Recorder("one")) == {w: {"status": "OK"} for w in workers}
    assert c.run(recorded) == {w: [("setup", "one")] for w in workers}

    def plugin_tag():
        return get_worker().plugins["recorder"].tag

    assert c.submit(plugin_tag, pure=False).result(timeout=5) == "one"
    c.register_plugin(Recorder("two"))  # same name: replaces
    assert c.run(recorded) == {w: [("setup", "one"), ("teardown", "one"), ("setup", "two")]
                               for w in workers}
    c.unregister_worker_plugin("recorder")
    assert all(r[-1] == ("teardown", "two") for r in c.run(recorded).values())
    with pytest.raises(ValueError, match="does not exist"):
        c.unregister_worker_plugin("recorder")


def test_worker_plugin_class_kwargs_and_failing_setup(inproc_client):
    c = inproc_client
    c.register_worker_plugin(Recorder, name="by-class", tag="kw")
    assert all(("setup", "kw") in r for r in c.run(recorded).values())
    c.unregister_worker_plugin("by-class")
    with pytest.raises(RuntimeError, match="setup failed on purpose"):
        c.register_worker_plugin(BrokenSetup(), name="broken")
    c.unregister_worker_plugin("broken")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_plugins_and_uploads_reach_workers_that_join_later(anyio_backend, tmp_path):
    from trioflow import Scheduler, Worker
    from trioflow.comm.inproc import new_address
    name = unique("joined_later")
    with trio.fail_after(30):
        async with Scheduler(address=new_address()) as scheduler:
            async with Worker(scheduler.address, nthreads=1) as first, \
                    Client(scheduler.address, asynchronous=True) as client:
                await client.upload_file(str(write_module(tmp_path, name, "v1")))
                await client.register_worker_plugin(Recorder("early"))
                await client.register_worker_plugin(AsyncSetup(), name="async-setup")
                assert first.recorded == [("setup", "early")]
                async with Worker(scheduler.address, nthreads=1) as late:
                    # its first task runs after the plugins were set up there
                    value = client.submit(module_value, name, workers=[late.address], pure=False)
                    assert await value == "v1"
                    directory = late.extensions["uploads"].directory()
                    assert os.path.exists(os.path.join(directory, f"{name}.py"))
                    assert late.recorded == [("setup", "early")]
                    assert ({"recorder", "async-setup", f"upload-file-{name}.py"}
                            <= set(late.plugins))
                    while not getattr(late, "async_setup_done", False):
                        await trio.sleep(0.01)
                assert late.recorded[-1] == ("teardown", "early")  # torn down as it closed
                assert not os.path.exists(directory)
                assert directory not in os.sys.path


# ----------------------------------------------------------------------- event logs

def test_log_event_from_client_and_tasks(inproc_client):
    c = inproc_client
    topic, other = unique("topic"), unique("other")

    def from_task(topic):
        get_client().log_event(topic, "sync task")
        return True

    async def from_async_task(topic):
        await get_client().log_event(topic, "async task")
        return True

    def from_worker(topic):
        get_worker().log_event(topic, "worker")  # one-way, ahead of the task's result
        return True

    c.log_event(topic, {"n": 1})
    assert c.submit(from_task, topic, pure=False).result(timeout=5)
    assert c.submit(from_async_task, topic, pure=False).result(timeout=5)
    assert c.submit(from_worker, topic, pure=False).result(timeout=5)
    c.log_event([topic, other], "both")
    events = c.get_events(topic)
    assert [msg for _, msg in events] == [{"n": 1}, "sync task", "async task", "worker", "both"]
    stamps = [stamp for stamp, _ in events]
    assert stamps == sorted(stamps)
    assert [msg for _, msg in c.get_events()[other]] == ["both"]
    assert c.get_events(unique("never")) == ()
    with pytest.raises(TypeError, match="msgpack"):
        c.log_event(topic, object())


def test_subscribe_topic_and_event_stream_blocking(inproc_client):
    c = inproc_client
    topic = unique("subscribed")
    received = []
    c.subscribe_topic(topic, received.append)
    c.log_event(topic, 1)
    c.log_event(topic, 2)
    wait_until(lambda: [msg for _, msg in received] == [1, 2], message="handler got events")
    c.unsubscribe_topic(topic)
    with pytest.raises(ValueError, match="No event handler"):
        c.unsubscribe_topic(topic)
    with c.events(topic) as stream:
        c.log_event(topic, 3)
        assert stream.get(timeout=5)[1] == 3
        with pytest.raises(TimeoutError):
            stream.get(timeout=0.05)
    # the stream got 3, so it reached this client after the handler was gone
    assert [msg for _, msg in received] == [1, 2]


async def test_event_stream_and_async_handler(anyio_backend):
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True) as client:
        handled = []

        async def handler(event):
            handled.append(event[1])

        client.subscribe_topic("handled", handler)
        with anyio.fail_after(10):
            async with client.events("streamed") as stream:
                await client.log_event("streamed", "one")
                await client.log_event(["streamed", "handled"], {"two": [2]})
                first, second = await anext(stream), await anext(stream)
            assert first[1] == "one"
            assert second[1]["two"][0] == 2
            while handled != [{"two": (2,)}] and handled != [{"two": [2]}]:
                await anyio.sleep(0.01)
        client.unsubscribe_topic("handled")


# ----------------------------------------------------------------------- metadata

def test_set_and_get_metadata(inproc_client):
    c = inproc_client
    root = unique("meta")
    c.set_metadata(root, 123)
    assert c.get_metadata(root) == 123
    c.set_metadata([root, "y"], 123)
    assert c.get_metadata(root) == {"y": 123}
    c.set_metadata([root, "w", "z"], 456)
    assert c.get_metadata(root) == {"y": 123, "w": {"z": 456}}
    assert c.get_metadata([root, "w"]) == {"z": 456}
    assert c.get_metadata((root, "w", "z")) == 456
    with pytest.raises(KeyError):
        c.get_metadata([root, "nope"])
    assert c.get_metadata([root, "nope"], default="fallback") == "fallback"
    assert c.get_metadata(unique("absent"), None) is None
    with pytest.raises(TypeError, match="msgpack"):
        c.set_metadata(root, object())


async def test_metadata_with_async_client(anyio_backend):
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True) as client:
        await client.set_metadata(["a", "b"], [1, 2])
        assert list(await client.get_metadata(["a", "b"])) == [1, 2]
        assert await client.get_metadata("missing", default=0) == 0
