"""The asyncio layer's tests again, on uvloop's event loop.

uvloop's transports do not subclass ``asyncio.Transport`` and its clock has
millisecond resolution: both once broke wskit.asyncio (a hang at connection
time, a ping latency of 0). Every test of ``test_asyncio`` and
``test_asyncio_wakeup`` runs here a second time with uvloop's policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

uvloop = pytest.importorskip("uvloop")

from tests.test_asyncio import *  # noqa: E402,F403  (collected again under uvloop)
from tests.test_asyncio_wakeup import *  # noqa: E402,F403


@pytest.fixture(autouse=True)
def _uvloop_policy() -> Iterator[None]:
    previous = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(previous)


def test_the_loop_really_is_uvloop() -> None:
    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert asyncio.run(loop_type()) is uvloop.Loop
