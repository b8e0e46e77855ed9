# dask docs, asynchronous.rst: the client under tornado's IOLoop
from tornado.ioloop import IOLoop

from dask.distributed import Client


async def f():
    client = await Client(asynchronous=True, processes=False, dashboard_address=None)
    future = client.submit(lambda x: x + 1, 10)
    result = await future
    total = sum(await client.gather(client.map(lambda x: 2 * x, range(5))))
    await client.close()
    return [result, total]


if __name__ == "__main__":
    print("RESULT", IOLoop().run_sync(f))
