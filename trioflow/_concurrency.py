"""Run several coroutines at once and re-raise the first failure as itself
(not wrapped in an ExceptionGroup), cancelling the rest."""
from __future__ import annotations

import trio


async def run_all(thunks) -> None:
    errors: list[BaseException] = []

    async with trio.open_nursery() as nursery:
        async def guard(thunk):
            try:
                await thunk()
            except Exception as exc:
                errors.append(exc)
                nursery.cancel_scope.cancel()

        for thunk in thunks:
            nursery.start_soon(guard, thunk)
    if errors:
        raise errors[0]
