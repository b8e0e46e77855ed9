"""Receive buffers that cost no more than the bytes written into them.

``bytearray(n)`` zero-fills its memory, which for a 200 MB frame is a pass
over every page before the socket writes them again; on this kind of machine
that alone halved transfer bandwidth.  Instead:

- a large writable frame (numpy data and other pickle buffers) is received
  into a private anonymous ``mmap``: the kernel hands out pages as they are
  first written, and the array unpickled over it keeps the mapping alive;
- a frame that is to become a ``bytes`` object is received straight into an
  uninitialised ``bytes`` of the right size, so no copy into a new ``bytes``
  follows.  That uses the C API through ctypes on CPython; anywhere it is not
  available the frame is received into a buffer and copied once;
- large buffers ask for transparent huge pages (``MADV_HUGEPAGE``, as numpy
  does for its own arrays): first-touch page faults dominate a fresh 200 MB
  receive on a VM, and 2 MiB pages cut them 500-fold (250 ms -> 50 ms).
"""
from __future__ import annotations

import ctypes
import mmap
import sys

#: frames at least this large go into an mmap rather than a bytearray
MMAP_MIN = 1024 * 1024
#: buffers at least this large ask for huge pages
HUGEPAGE_MIN = 4 * 1024 * 1024
_PAGE = mmap.PAGESIZE
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)
_PRIVATE = getattr(mmap, "MAP_PRIVATE", None), getattr(mmap, "MAP_ANONYMOUS", None)


def _libc_madvise():
    if _MADV_HUGEPAGE is None:
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
        madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        madvise.restype = ctypes.c_int
        return madvise
    except (OSError, AttributeError):
        return None


_madvise = _libc_madvise()


def _advise_hugepages(address: int, n: int) -> None:
    """Advise huge pages for the whole pages inside [address, address + n)."""
    if _madvise is None or n < HUGEPAGE_MIN:
        return
    start = -(-address // _PAGE) * _PAGE
    end = (address + n) // _PAGE * _PAGE
    if end > start:
        _madvise(start, end - start, _MADV_HUGEPAGE)  # advice only: failure is harmless


def writable(n: int):
    """A zero-copy target of ``n`` bytes that pickle may keep as a buffer."""
    if n < MMAP_MIN:
        return bytearray(n)
    if None in _PRIVATE:
        return mmap.mmap(-1, n)
    buffer = mmap.mmap(-1, n, flags=_PRIVATE[0] | _PRIVATE[1])
    if _MADV_HUGEPAGE is not None and n >= HUGEPAGE_MIN:
        try:
            buffer.madvise(_MADV_HUGEPAGE)
        except OSError:
            pass
    return buffer


def _direct_bytes():
    """``new(n) -> (bytes, writable view of its contents)`` or None if this
    interpreter does not let us fill a fresh bytes object in place."""
    if sys.implementation.name != "cpython":
        return None
    try:
        from_size = ctypes.pythonapi.PyBytes_FromStringAndSize
        from_size.restype = ctypes.py_object
        from_size.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t)
        offset = bytes.__basicsize__ - 1  # where ob_sval starts

        def new(n: int):
            obj = from_size(None, n)
            # the object is ours alone until returned and its hash is not yet
            # cached, so writing its contents is what C code does after the
            # same call
            address = id(obj) + offset
            _advise_hugepages(address, n)
            view = memoryview((ctypes.c_char * n).from_address(address)).cast("B")
            return obj, view

        probe, view = new(16)
        view[:] = b"trioflow-probe!!"
        if probe != b"trioflow-probe!!":
            return None
        return new
    except Exception:  # an interpreter without the C API through ctypes
        return None


_new_bytes = _direct_bytes()


def bytes_target(n: int):
    """``(target, finish)``: receive ``n`` bytes into the writable view
    ``target``; ``finish()`` then returns them as a ``bytes`` object."""
    if n == 0:
        return memoryview(bytearray()), bytes
    if _new_bytes is not None:
        obj, view = _new_bytes(n)
        return view, lambda: obj
    buffer = writable(n)
    return memoryview(buffer), lambda: bytes(buffer)
