"""A SpecCluster whose workers are `trioflow worker` subprocesses started by a
small deployer (a ProcessInterface, written as dask-jobqueue writes its jobs),
adapting to a burst of work and shrinking back with no result lost."""
import asyncio
import sys
import time

from trioflow import Client, Scheduler
from trioflow.deploy.spec import ProcessInterface, SpecCluster


class SubprocessWorker(ProcessInterface):
    def __init__(self, scheduler, name=None):
        super().__init__(scheduler=scheduler, name=name)
        self.scheduler, self.name, self.proc = scheduler, name, None

    async def start(self):
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "trioflow", "worker", self.scheduler, "--no-nanny",
            "--nthreads", "1", "--name", str(self.name), stdout=asyncio.subprocess.PIPE)
        while not (line := (await self.proc.stdout.readline()).decode()).startswith(
                "trioflow worker "):
            if not line:
                raise RuntimeError("the worker exited before it started")
        self.address = line.split()[2]
        await super().start()

    async def close(self):
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.communicate()
        await super().close()


def slow_square(x):
    time.sleep(0.5)
    return x * x


if __name__ == "__main__":
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                     worker={"cls": SubprocessWorker, "options": {}}) as cluster, \
            Client(cluster) as client:
        cluster.adapt(minimum=0, maximum=3, target_duration="1s", interval="200ms")
        futures = client.map(slow_square, range(12))
        print("sum of squares:", sum(client.gather(futures)), "- workers now:",
              len(cluster.workers))
        while len(cluster.workers) > 1:
            time.sleep(0.2)
        print("idle again: one worker kept, holding the results;",
              "they are still there:", client.gather(futures)[:4], "...")
