"""When and how soon a reconnecting client tries again, sans-I/O.

Both I/O layers reconnect the same way (``async for ws in
wskit.asyncio.connect(uri)``, ``for ws in wskit.sync.connect(uri,
reconnect=True)``): after a failure that a later attempt may not meet
again (:func:`is_transient`), they wait the next delay of
:func:`backoff_delays` and try again; anything else is raised to the
caller. The delays grow exponentially, up to a maximum, each shortened by a
random part (jitter) so that many clients cut off at once do not come back
at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from .defaults import BACKOFF_FACTOR, BACKOFF_INITIAL, BACKOFF_JITTER, BACKOFF_MAX
from .exceptions import InvalidHandshake, InvalidURI, NegotiationError, ProxyError, RedirectError, WebSocketClosed

__all__ = ["RETRY_STATUSES", "backoff_delays", "check_backoff", "is_transient"]

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP answers to the upgrade (or to a proxy's ``CONNECT``) worth trying again later."""


def check_backoff(initial: float, factor: float, maximum: float, jitter: float) -> None:
    """Check the backoff options of a reconnecting client.

    Raises:
        ValueError: a delay is negative, ``factor`` is below 1, or
            ``jitter`` is outside ``[0, 1]``; the message names the option.
    """
    for name, value in (("backoff_initial", initial), ("backoff_max", maximum)):
        if not value >= 0:
            raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if not factor >= 1:
        raise ValueError(f"backoff_factor must be >= 1, got {factor!r}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"backoff_jitter must be between 0 and 1, got {jitter!r}")


def backoff_delays(
    initial: float = BACKOFF_INITIAL,
    factor: float = BACKOFF_FACTOR,
    maximum: float = BACKOFF_MAX,
    jitter: float = BACKOFF_JITTER,
    *,
    rand: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield the seconds to wait before each retry, without end.

    The n-th delay (from 0) is ``min(maximum, initial * factor ** n)``,
    less a random part of up to ``jitter`` times itself.

    Args:
        initial: the first delay, before jitter.
        factor: how much longer each next delay is.
        maximum: the longest delay.
        jitter: the fraction of each delay drawn at random.
        rand: a function returning a float in ``[0, 1)``.

    Example:
        >>> list(zip(range(5), backoff_delays(1, 2, 10, 0)))
        [(0, 1), (1, 2), (2, 4), (3, 8), (4, 10)]
    """
    check_backoff(initial, factor, maximum, jitter)
    delay = min(initial, maximum)
    while True:
        yield delay * (1 - jitter * rand()) if jitter else delay
        delay = min(maximum, delay * factor)


def is_transient(exc: BaseException) -> bool:
    """Whether an attempt to connect that failed with ``exc`` may succeed later.

    Transient: the network (:class:`OSError`, a refused or reset TCP
    connection, :class:`TimeoutError`), a connection lost during the
    handshake, a server or proxy answering 408, 429 or 5xx (busy,
    restarting, or a proxy that cannot reach the server yet), a proxy that
    cannot be reached or closes without answering.

    Not transient (retrying would fail the same way): a bad URI, any other
    4xx answer (401, 403, 404, a proxy's 407), a refused subprotocol or
    extension, a redirect that cannot be followed, a server or proxy that
    does not speak HTTP.
    """
    if isinstance(exc, InvalidURI | RedirectError | NegotiationError):
        return False
    if isinstance(exc, InvalidHandshake):
        if exc.response is not None:
            return exc.response.status_code in RETRY_STATUSES
        if isinstance(exc, ProxyError):
            return isinstance(exc.__cause__, OSError | EOFError)
        return False
    return isinstance(exc, OSError | EOFError | WebSocketClosed)
