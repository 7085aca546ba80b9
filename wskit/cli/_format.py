"""How the command-line tools show close codes and messages."""

from __future__ import annotations

from ..frames import CloseCode

__all__ = ["describe_close", "format_message"]


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
