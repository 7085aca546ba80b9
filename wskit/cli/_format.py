"""How the command-line tools show close codes and messages."""

from __future__ import annotations

from ..frames import CloseCode

__all__ = ["describe_close", "describe_error", "format_message"]


def describe_close(code: int | None, reason: str | None) -> str:
    """Describe a close code and reason for humans, e.g. ``1000 (normal closure)``."""
    if code is None:
        return "no close code"
    try:
        name = CloseCode(code).name.lower().replace("_", " ")
    except ValueError:
        name = "application" if 4000 <= code <= 4999 else "registered" if 3000 <= code <= 3999 else "unknown"
    text = f"{code} ({name})"
    return f"{text}, reason {reason!r}" if reason else text


def format_message(message: str | bytes, limit: int = 200) -> str:
    """Render a message on one line: text as is, binary as hex with its size."""
    if isinstance(message, str):
        return message if len(message) <= limit else f"{message[:limit]}... ({len(message)} characters)"
    shown = message[: limit // 2].hex(" ")
    more = "..." if len(message) > limit // 2 else ""
    return f"(binary, {len(message)} bytes) {shown}{more}"


def describe_error(exc: BaseException, where: str = "") -> str:
    """Say in one line why connecting to (or serving on) ``where`` failed: no traceback, no class names.

    Args:
        exc: the exception.
        where: the URI or address it concerns (may be empty).
    """
    import asyncio
    import errno
    import ssl

    from ..exceptions import ConfigError, InvalidHandshake, InvalidURI

    at = f" {where}" if where else ""
    if isinstance(exc, InvalidURI):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS failure with{at}: {exc.verify_message or exc.reason or exc} "
                "(--cafile FILE trusts the authority that signed the server's certificate)")
    if isinstance(exc, ssl.SSLError):
        hint = " (is it a ws:// server, without TLS?)" if exc.reason == "WRONG_VERSION_NUMBER" else ""
        return f"TLS failure with{at}: {exc.reason or exc}{hint}"
    if isinstance(exc, InvalidHandshake):
        response = exc.response
        if response is not None:
            return f"the server{at} refused the WebSocket upgrade: HTTP {response.status_code} {response.reason_phrase}"
        return f"opening handshake with{at} failed: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to{at}: connection refused (is the server running?)"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):  # asyncio's is TimeoutError from Python 3.11
        return f"no answer from{at} in time (timed out)"
    if isinstance(exc, FileNotFoundError) and exc.filename is None:
        return f"cannot connect to{at}: no such Unix socket (is the server running?)"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"cannot listen on{at}: the address is already in use (another server? --port 0 picks a free one)"
    if isinstance(exc, ConfigError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{where + ': ' if where else ''}{exc.strerror or exc}"
    return f"{where + ': ' if where else ''}{exc}"
