"""Named values the scheduler keeps for every client: published datasets
(publish forms, the mapping, outliving the publisher's futures and client,
a Future rebuilt by key in another client) and metadata, on every face."""

import pytest

from trioflow import Future
from _tasks import inc
from _util import unique


# --- datasets ------------------------------------------------------------------------------


def test_publish_forms_list_get_and_unpublish(face):
    async def scenario(c):
        x, y = c.submit(inc, 1), c.submit(inc, 2)
        names = [unique("kw"), unique("named"), unique("mapping")]
        await face(c.publish_dataset(**{names[0]: [x, y]}))
        await face(c.publish_dataset(x, name=names[1]))
        await face(c.publish_dataset({names[2]: {"a": y}}))
        assert set(names) <= set(await face(c.list_datasets()))
        assert await face(c.gather(await face(c.get_dataset(names[0])))) == [2, 3]
        assert await face((await face(c.get_dataset(names[1]))).result(timeout=5)) == 2
        assert await face((await face(c.get_dataset(names[2])))["a"].result(timeout=5)) == 3
        both = (await face(c.get_dataset([names[1], names[0]])))[1]
        assert [await face(f.result()) for f in both] == [2, 3]

        with pytest.raises(KeyError, match="already exists"):
            await face(c.publish_dataset(x, name=names[1]))
        await face(c.publish_dataset(y, name=names[1], override=True))
        assert await face((await face(c.get_dataset(names[1]))).result(timeout=5)) == 3
        with pytest.raises(ValueError):
            await face(c.publish_dataset(x))  # positional needs name= or a mapping
        with pytest.raises(ValueError):
            await face(c.publish_dataset(name="nothing"))

        with pytest.raises(KeyError, match="not found"):
            await face(c.get_dataset(unique("missing")))
        assert await face(c.get_dataset(unique("missing"), default=None)) is None
        await face(c.unpublish_dataset(names[0]))
        await face(c.unpublish_dataset([names[1], names[2]]))
        assert not set(names) & set(await face(c.list_datasets()))
    face.run(scenario)


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


def test_published_data_outlives_the_publishers_futures(face):
    async def scenario(c):
        name = unique("kept")
        x = c.submit(inc, 41, pure=False)
        key = x.key
        assert await face(x.result(timeout=5)) == 42
        await face(c.publish_dataset(x, name=name))
        del x
        await face.barrier(c)
        assert await face.held(c, key)
        async with face.other_client(c) as other:
            got = await face(other.get_dataset(name))
            assert await face(got.result(timeout=5)) == 42
            await face(other.unpublish_dataset(name))
            await face.barrier(other)
            assert await face.held(c, key)  # the other client's future still holds it
            del got
        await face.until(lambda: face.forgotten(c, key), message="dataset key forgotten")
    face.run(scenario)


def test_dataset_outlives_the_publishing_client(face):
    async def scenario(c):
        name = unique("orphaned")
        async with face.other_client(c) as publisher:
            x = publisher.submit(inc, 1, pure=False)
            assert await face(x.result(timeout=5)) == 2
            await face(publisher.publish_dataset(x, name=name))
        got = await face(c.get_dataset(name))
        assert await face(got.result(timeout=5)) == 2
        await face(c.unpublish_dataset(name))
    face.run(scenario)


def test_future_rebuilt_in_another_client(face):
    async def scenario(c):
        x = c.submit(inc, 1, pure=False)
        key = x.key
        async with face.other_client(c) as other:
            again = Future(key, other)
            assert again.client is other
            assert await face(again.result(timeout=5)) == 2
            x.release()
            await face.barrier(c)
            assert await face.held(c, key)  # the rebuilt future wants it too
            assert await face(again.result(timeout=5)) == 2
    face.run(scenario)


# --- metadata ------------------------------------------------------------------------------


def test_set_and_get_metadata(face):
    async def scenario(c):
        root = unique("meta")
        await face(c.set_metadata(root, 123))
        assert await face(c.get_metadata(root)) == 123
        await face(c.set_metadata([root, "y"], 123))
        assert await face(c.get_metadata(root)) == {"y": 123}
        await face(c.set_metadata([root, "w", "z"], 456))
        assert await face(c.get_metadata(root)) == {"y": 123, "w": {"z": 456}}
        assert await face(c.get_metadata([root, "w"])) == {"z": 456}
        assert await face(c.get_metadata((root, "w", "z"))) == 456
        with pytest.raises(KeyError):
            await face(c.get_metadata([root, "nope"]))
        assert await face(c.get_metadata([root, "nope"], default="fallback")) == "fallback"
        assert await face(c.get_metadata(unique("absent"), None)) is None
        with pytest.raises(TypeError, match="msgpack"):
            await face(c.set_metadata(root, object()))
        # a list value
        await face(c.set_metadata(["a", "b"], [1, 2]))
        assert list(await face(c.get_metadata(["a", "b"]))) == [1, 2]
        assert await face(c.get_metadata("missing", default=0)) == 0
    face.run(scenario)
