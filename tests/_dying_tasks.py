"""Tasks that try to take their worker down with them (tests/test_task_deaths.py).

In an importable module so that worker processes unpickle them by reference."""

import asyncio
import os
import sys


def exit_process(code):
    os._exit(code)


def system_exit(code):
    sys.exit(code)


def keyboard_interrupt():
    raise KeyboardInterrupt


def segfault():
    import ctypes
    return ctypes.string_at(0)


async def trio_system_exit(code):
    import trio
    await trio.sleep(0)
    sys.exit(code)


async def asyncio_keyboard_interrupt():
    await asyncio.sleep(0)
    raise KeyboardInterrupt


def pid():
    return os.getpid()
