"""Optional built-in plugin ``logging``: one readable DEBUG line per frame and state change.

It is off by default. Turn it on with ``PluginManager(enable=["logging"])``
(or ``plugins: {enable: [logging]}`` in a configuration file). Once
registered its hooks run for every frame of every connection using that
manager, even when the logger is not at DEBUG (each call then returns after
one ``isEnabledFor`` check): to pay nothing, leave the plugin unregistered.

Lines go to the connection's ``protocol.logger``, prefixed ``>`` (sent),
``<`` (received) or ``=`` (state change)::

    > TEXT 'hello' [5 bytes]
    < BINARY 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13 ... [70000 bytes]
    < PING b'\\x01\\x02' [2 bytes]
    > TEXT 'hel' (fragment) [3 bytes]
    < CONT 'lo' [2 bytes]
    < TEXT f2 48 cd c9 c9 07 00 (compressed) [7 bytes]
    < CLOSE 1000 (OK) 'bye' [5 bytes]
    = OPEN -> CLOSING (receive_close)

Sent frames are logged after extensions encoded them and received frames
before extensions decode them: what is logged is what is on the wire
(unmasked). A continuation frame does not say which message it continues:
its payload is shown as text when it is valid UTF-8, else as hex.
"""

from __future__ import annotations

import codecs
import logging
from typing import Any

from ..frames import CLOSE_CODE_NAMES, Frame, Opcode, parse_close
from ..hookspecs import hookimpl

NAME = "logging"

ELIDE = 60
"""Payloads are shown up to about this many characters, then ``...``."""

_DEBUG = logging.DEBUG
_HEX_BYTES = ELIDE // 3  # "00 " per byte
_new_decoder = codecs.getincrementaldecoder("utf-8")
_NAMES = {op.value: op.name for op in Opcode}


def _hex(data: bytes) -> str:
    shown = data[:_HEX_BYTES].hex(" ")
    return shown + " ..." if len(data) > _HEX_BYTES else shown


def _text(data: bytes, final: bool) -> str | None:
    """Return ``repr`` of the payload as text (elided), or ``None`` if it is not UTF-8."""
    # Decode only what can be shown; a character cut at the end of the slice
    # (or of a fragment) is held back by the incremental decoder, not an error.
    head = data[: ELIDE * 4]
    try:
        text = _new_decoder().decode(head, final and len(head) == len(data))
    except UnicodeDecodeError:
        return None
    if len(text) > ELIDE or len(head) < len(data):
        return repr(text[:ELIDE]) + "..."
    return repr(text)


def _control(data: bytes) -> str:
    if len(data) > ELIDE // 3:
        return repr(data[: ELIDE // 3]) + "..."
    return repr(data)


def describe_frame(frame: Frame) -> str:
    """Describe a frame in one line, without the direction prefix.

    Args:
        frame: the frame (unmasked), as seen on the wire.

    Returns:
        For example ``"TEXT 'hello' [5 bytes]"`` or
        ``"CLOSE 1000 (OK) 'bye' [5 bytes]"``. Never raises for any
        :class:`~wskit.frames.Frame`.
    """
    opcode = int(frame.opcode)
    data = bytes(frame.data)
    name = _NAMES.get(opcode, f"OPCODE-{opcode:#x}")
    compressed = frame.rsv1
    if compressed or opcode == Opcode.BINARY:
        shown = _hex(data)
    elif opcode == Opcode.TEXT or opcode == Opcode.CONT:
        shown = _text(data, frame.fin) or _hex(data)
    elif opcode == Opcode.CLOSE:
        try:
            code, reason = parse_close(data)
        except Exception:  # an invalid Close is still logged, as hex
            shown = _hex(data) + " (invalid)"
        else:
            if not data:
                shown = "(no status code)"  # RFC 6455 §7.1.5: the code is then 1005
            else:
                shown = f"{code} ({CLOSE_CODE_NAMES.get(code, 'unknown')})"
                if reason:
                    shown += " " + (_text(reason.encode(), True) or "")
    else:  # PING, PONG, reserved opcodes
        shown = _control(data)
    flags = ""
    if not frame.fin:
        flags += " (fragment)"
    if compressed:
        flags += " (compressed)"  # RFC 7692 §6: RSV1 marks a compressed message
    if frame.rsv2:
        flags += " (rsv2)"
    if frame.rsv3:
        flags += " (rsv3)"
    sep = " " if shown else ""
    unit = "byte" if len(data) == 1 else "bytes"
    return f"{name}{sep}{shown}{flags} [{len(data)} {unit}]"


def _log(protocol: Any, prefix: str, frame: Frame) -> None:
    try:
        logger = protocol.logger
        # Logger.isEnabledFor is a cached dict lookup: cheap enough per frame,
        # and it follows level changes made while the connection is open.
        if logger.isEnabledFor(_DEBUG):
            logger.debug("%s %s", prefix, describe_frame(frame))
    except Exception:  # a logging plugin must never break a connection
        pass


@hookimpl
def wskit_frame_sent(protocol: Any, frame: Frame) -> None:
    """Log a sent frame: ``> TEXT 'hello' [5 bytes]``."""
    _log(protocol, ">", frame)


@hookimpl
def wskit_frame_received(protocol: Any, frame: Frame) -> None:
    """Log a received frame: ``< CLOSE 1000 (OK) 'bye' [5 bytes]``."""
    _log(protocol, "<", frame)


@hookimpl
def wskit_state_changed(protocol: Any, old: Any, new: Any, trigger: str) -> None:
    """Log a state change: ``= OPEN -> CLOSING (send_close)``."""
    try:
        logger = protocol.logger
        if logger.isEnabledFor(_DEBUG):
            logger.debug("= %s -> %s (%s)", getattr(old, "name", old), getattr(new, "name", new), trigger)
    except Exception:
        pass
