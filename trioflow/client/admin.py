"""The cluster administration methods of ``Client`` whose logic lives with
a coordination primitive's user side (``trioflow/client/primitives/``):
datasets, event logs, metadata, worker plugins, uploads.  Each is a plain
method handing the client's port to that module."""
from __future__ import annotations

from trioflow.client.primitives import datasets as _datasets
from trioflow.client.primitives.datasets import NO_DEFAULT as _no_default


class AdminMixin:
    # ---------------------------------------------------------------- datasets

    def publish_dataset(self, *args, name=None, override=False, **kwargs):
        """Publish named datasets to the scheduler, for other clients to
        ``get_dataset``: ``publish_dataset(my_data=futures)``,
        ``publish_dataset(futures, name="my_data")`` or
        ``publish_dataset({"my_data": futures})``.

        The scheduler keeps the data of the futures inside alive until the
        dataset is unpublished, also after this client's futures are gone.  Raises
        ``KeyError`` if a name is taken, unless ``override=True``."""
        return _datasets.publish_dataset(self.port, args, name, override, kwargs)

    def get_dataset(self, name, default=_no_default, **kwargs):
        """The dataset published under ``name`` (a list of names gives a list),
        with its futures belonging to this client.  A missing name raises
        ``KeyError``, or gives ``default`` if one is passed."""
        return _datasets.get_dataset(self.port, name, default)

    def list_datasets(self, **kwargs):
        """Names of the datasets published on the scheduler."""
        return _datasets.list_datasets(self.port)

    def unpublish_dataset(self, name, **kwargs):
        """Remove the dataset ``name`` (or each of a list of names); its data is
        freed once no client holds futures of it.  Unknown names are ignored."""
        return _datasets.unpublish_dataset(self.port, name)

    @property
    def datasets(self):
        """The published datasets as a mapping: ``client.datasets["x"] = futures``
        publishes (replacing), ``client.datasets["x"]`` gets, ``del`` unpublishes.
        For blocking clients."""
        return _datasets.Datasets(self)
