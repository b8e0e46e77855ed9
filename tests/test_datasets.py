"""Named values the scheduler keeps for every client: published datasets
(publish forms, the mapping, outliving the publisher's futures and client,
a Future rebuilt by key in another client) and metadata, on every face."""

import pytest

from trioflow import Client, Future
from _tasks import inc
from _util import barrier, key_is_forgotten, key_is_held, unique, wait_until


# --- datasets ------------------------------------------------------------------------------


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
