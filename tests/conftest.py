"""Settings for the whole test suite.

* Hypothesis runs without its per-example deadline: the suite must pass on a
  loaded machine, where one slow example says nothing about the code.
* Tests stop the programs they start with Ctrl-C (SIGINT). A job started in
  the background by a non-interactive shell inherits SIGINT *ignored*, and so
  would those programs; Python then never raises KeyboardInterrupt in them.
  The default handler is put back here, so children start with SIGINT at its
  default disposition, as they do when run from a terminal.
"""

from __future__ import annotations

import signal

from hypothesis import settings

settings.register_profile("wskit", deadline=None)
settings.load_profile("wskit")

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
