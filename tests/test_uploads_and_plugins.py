"""What is sent to every worker: upload_file (.py and .zip, reloaded when
uploaded again, reaching workers that join later) and worker plugins (setup,
replace, teardown, class keywords, a failing setup, async setup)."""

import importlib
import os
import zipfile

import pytest
import trio

from trioflow import Client, WorkerPlugin, get_worker
from _util import cli_worker, unique

pytestmark = pytest.mark.anyio


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


# --- upload_file ---------------------------------------------------------------------------


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


# --- worker plugins ------------------------------------------------------------------------


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
