"""Tokens: making one, and the private files that carry it.

A scheduler that requires a token writes it, next to its address, into two
files only its user can read (mode 0600):

- the scheduler file, where the user asked (``--scheduler-file``), which
  workers and clients anywhere are pointed at;
- a runtime file, ``scheduler-HOST-PORT.json`` in ``$XDG_RUNTIME_DIR/trioflow``
  (``~/.local/share/trioflow/runtime`` without one), removed when the
  scheduler closes.  A process of the same user on the same machine that
  connects to a loopback address without a token finds it there, so that
  ``trioflow scheduler`` / ``trioflow worker ws://127.0.0.1:8786`` /
  ``Client("ws://127.0.0.1:8786")`` keep working with tokens on.
"""
from __future__ import annotations

import ipaddress
import json
import os
import secrets
import tempfile

#: environment variable that carries a token (read by the CLI and by connect)
TOKEN_ENV = "TRIOFLOW_TOKEN"
#: host names that mean "this machine, over loopback"
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: hosts a scheduler may have bound that a loopback connection also reaches
_WILDCARDS = ("0.0.0.0", "::")


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def token_from_env(environ=os.environ) -> str | None:
    return environ.get(TOKEN_ENV) or None


def read_token_file(path: str) -> str:
    """The token in ``path``: its text, without surrounding whitespace, or
    the ``"token"`` of a scheduler file."""
    with open(path) as f:
        text = f.read().strip()
    if text.startswith("{"):
        try:
            text = json.loads(text).get("token") or ""
        except ValueError:
            pass
    if not text:
        raise ValueError(f"the token file {path} holds no token")
    return text


def read_scheduler_file(path: str, token: str | None = None) -> tuple[str, str | None]:
    """``(address, token)`` of a scheduler file; a ``token`` given wins over its."""
    with open(path) as f:
        info = json.load(f)
    return info["address"], token or info.get("token")


def write_private_json(path: str, data: dict) -> None:
    """Write ``data`` as JSON to ``path``, readable by this user only (0600),
    in one step: a reader sees the old file or the whole new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".trioflow-", dir=directory)  # created 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def runtime_dir(create: bool = False) -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        directory = os.path.join(base, "trioflow")
    else:
        directory = os.path.join(os.path.expanduser("~"), ".local", "share", "trioflow",
                                 "runtime")
    if create:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    return directory


def runtime_file(host: str, port: int, create_dir: bool = False) -> str:
    safe_host = host.strip("[]").replace(":", "_")
    return os.path.join(runtime_dir(create_dir), f"scheduler-{safe_host}-{port}.json")


def write_runtime_file(host: str, port: int, address: str, token: str, owner: str) -> str:
    """Record ``token`` for same-machine loopback peers; returns the path."""
    path = runtime_file(host, port, create_dir=True)
    _remove_stale(os.path.dirname(path))
    write_private_json(path, {"address": address, "token": token, "id": owner,
                              "pid": os.getpid()})
    return path


def remove_runtime_file(path: str, owner: str) -> None:
    """Remove the runtime file if it is still ``owner``'s (a scheduler started
    on the same port since may have replaced it)."""
    try:
        with open(path) as f:
            if json.load(f).get("id") != owner:
                return
        os.remove(path)
    except (OSError, ValueError):
        pass


def _remove_stale(directory: str) -> None:
    """Remove the files of schedulers that were killed before they could."""
    for name in os.listdir(directory):
        if not (name.startswith("scheduler-") and name.endswith(".json")):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                pid = json.load(f).get("pid")
        except (OSError, ValueError, AttributeError):
            continue
        if not _alive(pid):
            try:
                os.remove(path)
            except OSError:
                pass


def find_runtime_token(host: str, port: int) -> tuple[str, str] | None:
    """``(token, path)`` of a live scheduler of this user that listens where a
    connection to loopback ``host:port`` arrives, or None."""
    if not is_loopback(host):
        return None
    candidates = []
    for name in (host.strip("[]"), *_LOOPBACK_NAMES, *_WILDCARDS):
        if name not in candidates:
            candidates.append(name)
    for name in candidates:
        path = runtime_file(name, port)
        try:
            with open(path) as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or not isinstance(info.get("token"), str):
            continue
        if not _alive(info.get("pid")):
            continue  # left behind by a scheduler that was killed
        return info["token"], path
    return None


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
