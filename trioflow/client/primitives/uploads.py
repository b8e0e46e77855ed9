"""Uploads, the client side of ``Client.upload_file`` (worker half:
``trioflow/server/extensions/uploads.py``): the file travels as a worker plugin."""
from __future__ import annotations

from trioflow.client.primitives.plugins import register_worker_plugin
from trioflow.server.extensions.uploads import UploadFile


def upload_file(port, filename, load: bool = True):
    """``Client.upload_file``."""
    with open(filename, "rb") as f:
        data = f.read()
    plugin = UploadFile(filename, data, load)
    return register_worker_plugin(port, plugin, name=f"upload-file-{plugin.filename}")
