"""Settings for the whole test suite.

* Hypothesis runs without its per-example deadline: the suite must pass on a
  loaded machine, where one slow example says nothing about the code.
* Tests stop the programs they start with Ctrl-C (SIGINT). A job started in
  the background by a non-interactive shell inherits SIGINT *ignored*, and so
  would those programs; Python then never raises KeyboardInterrupt in them.
  The default handler is put back here, so children start with SIGINT at its
  default disposition, as they do when run from a terminal.
* ``gathers`` records every ``Gather`` the frame readers make (frames over
  1 MiB with the C accelerator), for tests that check real transports get
  their messages without a copy.
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
from hypothesis import settings

from wskit import frames as frames_module

settings.register_profile("wskit", deadline=None)
settings.load_profile("wskit")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def gathers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ``Gather`` the frame readers make during the test (none without the C accelerator)."""
    made: list[Any] = []
    real = frames_module.Gather
    if real is None:
        return made

    def recording(length: int) -> Any:
        made.append(real(length))
        return made[-1]

    monkeypatch.setattr(frames_module, "Gather", recording)
    return made
