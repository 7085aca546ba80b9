"""WebSocket frames (RFC 6455 §5): types, serialization and parsing.

:class:`Frame` is the unit that extensions transform. :func:`serialize_frame`
turns a frame into bytes; :class:`FrameReader` turns a byte stream into frames,
checking every framing rule of RFC 6455 §5 that applies to a receiver.
"""

from __future__ import annotations

import enum
import os
import struct
from typing import Any, NamedTuple

from .exceptions import PayloadTooBig, ProtocolError
from .mask import Cursor, Gather, PyCursor, apply_mask, mask_frame

__all__ = [
    "Opcode",
    "CloseCode",
    "Frame",
    "serialize_frame",
    "serialize_close",
    "parse_close",
    "check_close_code",
    "FrameReader",
    "fragment_limit",
    "DATA_OPCODES",
    "CONTROL_OPCODES",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONT, Opcode.TEXT, Opcode.BINARY})
# Opcode members by value, so parsed frames carry Opcode members (compare with ``is``)
# at the cost of one tuple index; reserved values never reach a Frame.
_OPCODES: tuple[int, ...] = tuple(Opcode(i) if i in Opcode._value2member_map_ else i for i in range(16))
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})


class CloseCode(enum.IntEnum):
    """Close codes (RFC 6455 §7.4.1 and the IANA registry)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015

    def __str__(self) -> str:
        # A close code prints as its number (as IntEnum members do from Python 3.11 on).
        return str(int(self))


CLOSE_CODE_NAMES: dict[int, str] = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received",
    1006: "abnormal closure",
    1007: "invalid data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure",
}

# Codes a peer may put on the wire (RFC 6455 §7.4.1, §7.4.2): the assigned
# 1000-1014 minus those reserved for local use, and 3000-4999.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010,
                             1011, 1012, 1013, 1014})


def check_close_code(code: int) -> None:
    """Raise :class:`ProtocolError` unless ``code`` may appear in a Close frame.

    Args:
        code: the close code.

    Raises:
        ProtocolError: for codes below 1000, the reserved 1004, 1005, 1006
            and 1015, the unassigned 1016-2999 and codes from 5000 up.
    """
    if code in _SENDABLE_CODES or 3000 <= code <= 4999:
        return
    if code in (1004, 1005, 1006, 1015):
        raise ProtocolError(f"close code {code} is reserved and must not be sent in a Close frame")
    raise ProtocolError(f"close code {code} is not a valid close code "
                        "(1000-1014 assigned, 3000-4999 registered/private)")


class Frame(NamedTuple):
    """A WebSocket frame, the unit extensions transform.

    ``data`` is the unmasked payload. Use ``frame._replace(data=...)`` to
    derive a modified frame.
    """

    opcode: int
    data: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __repr__(self) -> str:
        try:
            name = Opcode(self.opcode).name
        except ValueError:
            name = hex(self.opcode)
        size = len(self.data)
        shown = bytes(self.data[:40]) + (b"..." if size > 40 else b"")
        flags = "".join(f for f, on in (("F", self.fin), ("1", self.rsv1), ("2", self.rsv2), ("3", self.rsv3)) if on)
        return f"Frame({name}, {shown!r}, [{size} bytes], flags={flags or '-'})"


_pack_B2 = struct.Struct("!BB").pack
_pack_BBH = struct.Struct("!BBH").pack
_pack_BBQ = struct.Struct("!BBQ").pack
_urandom = os.urandom
#: The headers of unmasked, unfragmented text and binary frames with a payload
#: of 0 to 125 bytes, by payload length (a server's small messages).
TEXT_HEADERS = tuple(bytes((0x81, n)) for n in range(126))
BINARY_HEADERS = tuple(bytes((0x82, n)) for n in range(126))


def byte_view(data: bytes | bytearray | memoryview) -> bool:
    """Whether ``data`` is a ``memoryview`` of plain contiguous bytes (one dimension).

    Such a view may be parsed in place, as ``bytes`` is, or copied from as
    it stands (its ``len()`` counts bytes); other views (wider items,
    several dimensions, gaps) are copied into a buffer first.
    """
    return type(data) is memoryview and data.format == "B" and data.ndim == 1 and data.c_contiguous


def serialize_frame(frame: Frame, mask: bool) -> bytes:
    """Serialize ``frame`` for the wire.

    Args:
        frame: the frame to write.
        mask: ``True`` on the client side (RFC 6455 §5.3: a client MUST mask
            every frame, with a fresh unpredictable key per frame).

    Returns:
        The frame's bytes.
    """
    opcode, data, fin, rsv1, rsv2, rsv3 = frame
    b0 = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | (0x10 if rsv3 else 0)
    return encode_frame(b0, data, mask)


def encode_frame(b0: int, data: bytes | bytearray | memoryview, mask: bool) -> bytes:
    """Serialize a frame given its first header byte (FIN, RSV, opcode).

    Behind :func:`serialize_frame`, control frames and broadcasts: the
    frame of :func:`encode_message` as one ``bytes``.
    """
    parts = encode_message(b0, data, mask)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# From this size on, an unmasked ``bytes`` payload is not copied behind its
# header: encode_message returns the two, to be written in one writev().
SPLIT_SIZE = 16384


def encode_message(b0: int, data: bytes | bytearray | memoryview, mask: bool) -> list[bytes]:
    """:func:`encode_frame` as the list of bytes the ``send_*`` methods return.

    A large unmasked ``bytes`` payload (a server's, of at least
    :data:`SPLIT_SIZE` bytes) comes back as ``[header, data]`` instead of
    being copied behind the header: the frame is the concatenation of the
    list, as always. Mutable payloads are copied (the caller may change them
    once the call returns).
    """
    if type(data) is memoryview and not byte_view(data):
        data = data.tobytes()  # len() must count bytes, not items or rows; and contiguous
    length = len(data)
    mbit = 0x80 if mask else 0
    # RFC 6455 §5.2: 7-bit, 16-bit or 64-bit (most significant bit 0) length.
    if length < 126:
        header = _pack_B2(b0, mbit | length)
    elif length < 65536:
        header = _pack_BBH(b0, mbit | 126, length)
    else:
        header = _pack_BBQ(b0, mbit | 127, length)
    if mask:
        return [mask_frame(header, data, _urandom(4))]
    if length >= SPLIT_SIZE and type(data) is bytes:
        return [header, data]
    return [header + data]


def serialize_close(code: int, reason: str) -> bytes:
    """Build a Close frame payload (RFC 6455 §5.5.1).

    ``code`` 1005 with an empty reason gives an empty payload.

    Raises:
        ProtocolError: if the code may not be sent or the reason is longer
            than 123 bytes once encoded.
    """
    if code == CloseCode.NO_STATUS_RCVD:
        if reason:
            raise ProtocolError("close code 1005 carries no reason (it means 'no status code')")
        return b""
    check_close_code(code)
    encoded = reason.encode("utf-8")
    if len(encoded) > 123:
        raise ProtocolError(f"close reason is {len(encoded)} bytes in UTF-8; a Close frame allows at most 123")
    return struct.pack("!H", code) + encoded


def parse_close(data: bytes) -> tuple[int, str]:
    """Parse a received Close frame payload (RFC 6455 §5.5.1, §7.4).

    Returns:
        ``(code, reason)``; ``(1005, "")`` for an empty payload.

    Raises:
        ProtocolError: with ``close_code`` 1002 for a one-byte payload or a
            code that may not be sent, 1007 for a reason that is not UTF-8.
    """
    n = len(data)
    if n == 0:
        return CloseCode.NO_STATUS_RCVD, ""
    if n == 1:
        raise ProtocolError("Close frame payload of 1 byte: a close code takes 2 bytes",
                            close_code=CloseCode.PROTOCOL_ERROR)
    code = (data[0] << 8) | data[1]
    try:
        check_close_code(code)
    except ProtocolError as exc:
        raise ProtocolError(f"received {exc}", close_code=CloseCode.PROTOCOL_ERROR) from None
    try:
        reason = bytes(data[2:]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"Close frame reason is not valid UTF-8: {exc.reason} at byte {exc.start}",
                            close_code=CloseCode.INVALID_DATA) from None
    return code, reason


_unpack_H = struct.Struct("!H").unpack_from
_unpack_Q = struct.Struct("!Q").unpack_from

#: A message may arrive in one frame per this many bytes of ``max_size``...
FRAGMENT_BYTES = 16
#: ...and in at least this many frames, however small ``max_size`` is.
MIN_FRAGMENT_LIMIT = 1024
# A frame of GATHER_MIN to GATHER_KEEP bytes whose payload has only partly
# arrived is gathered in a buffer the reader keeps for the next large frame
# (no regrowth of the receive buffer, no fresh pages per message; see
# FrameReader.read). The buffer is released when a frame that was not
# gathered completes, so a connection holds it only while large messages
# follow each other. Longer frames, up to GATHER_MAX bytes, are gathered in
# the bytes object that becomes their payload when the C accelerator is
# built (its Gather: unmasked in place and handed out without a copy; one
# pass over fresh memory instead of two); the longest, or all longer ones
# without it, in the receive buffer as they arrive. GATHER_MAX bounds what
# a frame header alone makes the reader reserve (address space: pages are
# only touched as the payload arrives). Protocol.receive_buffer offers the
# part still due of a gathered frame to the transport, which may read
# straight into it.
GATHER_MIN = 64 * 1024
GATHER_KEEP = 1024 * 1024
GATHER_MAX = 64 * 1024 * 1024
# A released gathering buffer is kept, one per process, for the next reader
# that gathers a large frame: a new connection's first large message then
# touches no fresh memory. Only [:length] of it is ever delivered, and only
# once every byte of that was received, so nothing of an earlier frame leaks.
_SPARE: list[bytearray] = []
# FrameReader._remaining while a frame is gathered: its cursor counts the bytes still due.
_GATHERED = -1


def _gathering_buffer(length: int) -> bytearray:
    """The spare gathering buffer when it is long enough, else a new one."""
    try:
        spare = _SPARE.pop()
    except IndexError:
        return bytearray(length)
    return spare if len(spare) >= length else bytearray(length)


def _release_buffer(kept: bytearray, spare: list[bytearray] = _SPARE) -> None:
    """Keep ``kept`` as the spare gathering buffer unless there is one already."""
    if not spare:
        spare.append(kept)


_NO_FRAGMENT_LIMIT = 1 << 62  # max_size=None: no cap (a plain int keeps the check one comparison)


def fragment_limit(max_size: int | None) -> int | None:
    """Return how many frames a received message may take, given ``max_size``.

    Payload bytes alone do not bound what a fragmented message costs: empty
    continuation frames add nothing to its size but still take time to
    parse, so a peer could keep one message open forever. A message may
    therefore have at most ``max(max_size // 16, 1024)`` frames (65,536 for
    the default 1 MiB); one more ends the connection with 1009, as a payload
    over ``max_size`` does. A legitimate sender whose fragments average 16
    bytes or more never reaches it (the Autobahn test suite's 4 MiB messages
    in 64-byte fragments need a quarter of what a 4 MiB ``max_size`` allows).

    Args:
        max_size: the limit on a message's payload, or ``None``.

    Returns:
        The limit on the number of frames, or ``None`` (no limit) when
        ``max_size`` is ``None``.
    """
    if max_size is None:
        return None
    return max(max_size // FRAGMENT_BYTES, MIN_FRAGMENT_LIMIT)


class FrameReader:
    """Turns a byte stream into :class:`Frame` objects (RFC 6455 §5).

    Bytes go in with :meth:`feed`; :meth:`read` returns every frame they
    complete. The reader enforces the framing rules a receiver MUST check:
    masking by side (§5.1), RSV bits without a negotiated meaning (§5.2),
    reserved opcodes (§5.2), control frames that are fragmented or longer
    than 125 bytes (§5.5), continuation rules (§5.4), the 64-bit length's
    most significant bit (§5.2), and a message size limit checked from the
    frame header, before the payload is buffered.

    With ``stream=True`` a data frame whose payload has only partly arrived
    is delivered in pieces as it arrives (the first piece keeps the opcode,
    later ones are ``CONT``, only the last keeps FIN). Fragmentation is
    transparent to messages (§5.4), so this lets the receiver check UTF-8
    and sizes early and keeps memory linear. It is only valid when no
    extension needs whole frames.

    A message may take at most ``max_frames`` frames (by default
    :func:`fragment_limit` of ``max_size``): a peer cannot keep a message
    open forever with empty continuation frames (1009 beyond it).

    Args:
        mask_expected: ``True`` on a server (client frames MUST be masked),
            ``False`` on a client (server frames MUST NOT be masked).
        max_size: limit on a message's total payload, or ``None``.
        rsv_mask: the RSV bits negotiated extensions allow (``0x70`` = all).
        stream: deliver partial data frames in pieces (see above).
        max_frames: limit on the frames of one message; ``None`` (default)
            derives it from ``max_size`` (:func:`fragment_limit`).
    """

    __slots__ = ("buf", "pos", "need", "mask_expected", "max_size", "rsv_mask", "stream",
                 "in_message", "message_size", "text_message", "_remaining", "_key", "_fin", "_max_frames",
                 "_gather", "_cursor", "_gather_b0", "_kept", "_kept_used", "_target", "_handed")

    def __init__(self, mask_expected: bool, max_size: int | None = None, rsv_mask: int = 0,
                 stream: bool = True, max_frames: int | None = None) -> None:
        self.buf = bytearray()
        self.pos = 0
        # len(buf) needed before the next frame can complete (0: unknown);
        # callers may skip read() while the buffer is shorter. -1: a large
        # frame is being gathered (see gather_view); its pieces may be put
        # with _cursor while they do not complete it.
        self.need = 0
        self.mask_expected = mask_expected
        self.max_size = max_size
        self.rsv_mask = rsv_mask
        self.stream = stream
        # How many frames of a fragmented message arrived so far (0: none in progress).
        self.in_message = 0
        self.max_frames = fragment_limit(max_size) if max_frames is None else max_frames
        self.message_size = 0  # payload bytes of the current message so far
        self.text_message = False  # the current message is text (only text is streamed)
        # Payload bytes still due for the frame being streamed; _GATHERED for
        # a frame being gathered (its cursor counts them): non-zero either way.
        self._remaining = 0
        self._key: bytes | None = None  # its masking key, rotated to the next byte
        self._fin = True  # its FIN bit
        # A large frame being gathered (see GATHER_MIN): its payload so far
        # (still masked), the cursor that writes its pieces (how many bytes
        # arrived, how many are due; it holds a buffer of the payload until
        # the frame completes) and its first byte.
        self._gather: memoryview | None = None
        self._cursor: PyCursor | None = None
        self._gather_b0 = 0
        self._kept: bytearray | None = None  # the gathering buffer, kept (see GATHER_KEEP)
        self._kept_used = False  # a gathered frame completed in this read()
        # A frame over GATHER_KEEP bytes gathered in its own bytes object (a
        # Gather; _gather is then a view of it), and the last view of it
        # gather_view handed out (released by gathered()).
        self._target: Any = None
        self._handed: memoryview | None = None

    @property
    def max_frames(self) -> int | None:
        """The limit on the frames of one message (``None``: no limit)."""
        limit = self._max_frames
        return None if limit == _NO_FRAGMENT_LIMIT else limit

    @max_frames.setter
    def max_frames(self, limit: int | None) -> None:
        self._max_frames = _NO_FRAGMENT_LIMIT if limit is None else limit

    def __del__(self, release: Any = _release_buffer) -> None:
        # The connection is gone: its gathering buffer may serve the next one.
        kept = getattr(self, "_kept", None)  # None too if __init__ did not finish
        if kept is not None:
            release(kept)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes to the buffer."""
        self.buf += data

    def buffered(self) -> int:
        """Return how many received bytes are not yet parsed."""
        return len(self.buf) - self.pos

    def take_buffer(self) -> bytes:
        """Remove and return the unparsed bytes."""
        data = bytes(self.buf[self.pos:])
        self.buf.clear()
        self.pos = 0
        return data

    def read(self, data: bytes | bytearray | memoryview = b"") -> tuple[list[Frame], ProtocolError | None]:
        """Parse every complete frame (or streamable piece) in the buffer.

        Args:
            data: more received bytes. When nothing else is buffered,
                ``bytes`` and a contiguous byte ``memoryview`` are parsed in
                place, without copying them into the buffer first; nothing
                refers to them once the call returns (a read buffer may be
                reused at once).

        Returns:
            The frames, and the violation that stopped parsing (or ``None``).
            Frames before a violation are returned so that nothing received
            correctly is lost; nothing after it is parsed.
        """
        frames: list[Frame] = []
        append = frames.append
        buf: bytes | bytearray | memoryview = self.buf
        pos = self.pos
        borrowed = False
        gathering = False
        if data:
            if pos == len(buf) and (type(data) is bytes or byte_view(data)):
                # Parse the caller's bytes in place (every payload is copied
                # out of them); only an unparsed tail is kept.
                buf = data
                pos = 0
                borrowed = True
            else:
                self.buf += data  # in place: buf is this same bytearray
        end = len(buf)
        error: ProtocolError | None = None
        need = 0
        text_message = self.text_message
        max_size = self.max_size
        rsv_forbidden = 0x70 & ~self.rsv_mask
        mask_expected = 0x80 if self.mask_expected else 0
        in_message = self.in_message
        message_size = self.message_size
        mask = apply_mask
        try:
            if self._remaining:
                pos = self._read_rest(buf, frames, pos, end)
            while end - pos >= 2:
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                hlen = 2
                if length >= 126:
                    if length == 126:
                        if end - pos < 4:
                            break
                        length = _unpack_H(buf, pos + 2)[0]
                        hlen = 4
                    else:
                        if end - pos < 10:
                            break
                        length = _unpack_Q(buf, pos + 2)[0]
                        hlen = 10
                        if length >> 63:
                            # RFC 6455 §5.2: the most significant bit MUST be 0.
                            raise ProtocolError("frame length has its most significant bit set (RFC 6455 §5.2)",
                                                close_code=CloseCode.PROTOCOL_ERROR)
                masked = b1 & 0x80
                if masked != mask_expected:
                    # RFC 6455 §5.1: clients MUST mask, servers MUST NOT.
                    if mask_expected:
                        raise ProtocolError("unmasked frame from a client: client frames must be masked",
                                            close_code=CloseCode.PROTOCOL_ERROR)
                    raise ProtocolError("masked frame from a server: server frames must not be masked",
                                        close_code=CloseCode.PROTOCOL_ERROR)
                opcode = b0 & 0x0F
                if b0 & rsv_forbidden:
                    # RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them.
                    raise ProtocolError(f"RSV bits 0x{(b0 & 0x70) >> 4:x} set on a {_opname(opcode)} frame, "
                                        "but no negotiated extension defines them", close_code=CloseCode.PROTOCOL_ERROR)
                if opcode >= 8:
                    if opcode > 10:
                        raise ProtocolError(f"reserved control opcode 0x{opcode:x} (RFC 6455 §5.2)",
                                            close_code=CloseCode.PROTOCOL_ERROR)
                    if not b0 & 0x80:
                        # RFC 6455 §5.5: control frames MUST NOT be fragmented.
                        raise ProtocolError(f"fragmented {_opname(opcode)} frame: control frames must have FIN set",
                                            close_code=CloseCode.PROTOCOL_ERROR)
                    if length > 125:
                        # RFC 6455 §5.5: control frames MUST have a payload of 125 bytes or less.
                        raise ProtocolError(f"frame length {length} > 125 for a {_opname(opcode)} frame",
                                            close_code=CloseCode.PROTOCOL_ERROR)
                    size = 0
                else:
                    if opcode == 0:
                        if not in_message:
                            # RFC 6455 §5.4: a continuation frame needs a message to continue.
                            raise ProtocolError("continuation frame without a message in progress",
                                                close_code=CloseCode.PROTOCOL_ERROR)
                        if in_message >= self._max_frames:
                            raise PayloadTooBig(f"message in more than {in_message} frames: at most {in_message} "
                                                f"are allowed (one per {FRAGMENT_BYTES} bytes of max_size, at "
                                                f"least {MIN_FRAGMENT_LIMIT})", close_code=CloseCode.MESSAGE_TOO_BIG)
                        size = message_size + length
                    elif opcode > 2:
                        raise ProtocolError(f"reserved data opcode 0x{opcode:x} (RFC 6455 §5.2)",
                                            close_code=CloseCode.PROTOCOL_ERROR)
                    else:
                        if in_message:
                            # RFC 6455 §5.4: fragments of one message are not interleaved with another.
                            raise ProtocolError(f"{_opname(opcode)} frame while a fragmented message is in progress "
                                                "(expected a continuation frame)", close_code=CloseCode.PROTOCOL_ERROR)
                        size = length
                    if max_size is not None and size > max_size:
                        raise PayloadTooBig(f"message of at least {size} bytes exceeds max_size={max_size}",
                                            close_code=CloseCode.MESSAGE_TOO_BIG)
                if masked:
                    hlen += 4
                start = pos + hlen
                stop = start + length
                if stop <= end:
                    if length > 2048:  # large: view the payload instead of copying it
                        with memoryview(buf) as view:
                            if masked:
                                data = mask(view[start:stop], bytes(buf[start - 4:start]))
                            else:
                                data = view[start:stop].tobytes()
                    elif masked:
                        data = mask(buf[start:stop], bytes(buf[start - 4:start]))
                    else:
                        data = bytes(buf[start:stop])
                    pos = stop
                    if opcode < 8:
                        if opcode:
                            text_message = opcode == 1
                        if b0 & 0x80:
                            in_message = 0
                            message_size = 0
                        else:
                            in_message += 1
                            message_size = size
                    if b0 & 0x70:
                        append(Frame(_OPCODES[opcode], data, b0 & 0x80 != 0,
                                     b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0))
                    else:
                        append(Frame(_OPCODES[opcode], data, b0 & 0x80 != 0))
                    continue
                if 0 < opcode < 8:
                    text_message = opcode == 1
                if self.stream and opcode < 8 and end > start and text_message:
                    # Deliver what has arrived of a text frame, so that invalid
                    # UTF-8 fails fast (RFC 6455 §8.1); the rest follows as CONT
                    # pieces. Other frames wait until they are complete.
                    take = end - start
                    if masked:
                        key = bytes(buf[start - 4:start])
                        data = mask(buf[start:end], key)
                        shift = take & 3
                        self._key = key[shift:] + key[:shift] if shift else key
                    else:
                        data = bytes(buf[start:end])
                        self._key = None
                    pos = end
                    self._remaining = length - take
                    self._fin = b0 & 0x80 != 0
                    # The frame as a whole is accounted for now.
                    in_message = 0 if b0 & 0x80 else in_message + 1
                    message_size = 0 if b0 & 0x80 else size
                    append(Frame(_OPCODES[opcode], data, False, b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0))
                    break
                if GATHER_MIN <= length and end >= start and opcode < 8 and (
                        length <= GATHER_KEEP or (Gather is not None and length <= GATHER_MAX)):
                    # Gather the payload in the kept buffer (or its own bytes
                    # object) instead of growing the receive buffer; accounted
                    # for now, as a streamed frame is, and delivered whole by
                    # _read_rest.
                    payload = self._gathering_view(length)
                    if payload is not None:
                        self._gather = payload
                        with memoryview(buf) as view:
                            payload[:end - start] = view[start:end]
                        cursor = self._cursor = Cursor(payload)
                        cursor.advance(end - start)
                        self._key = bytes(buf[start - 4:start]) if masked else None
                        self._gather_b0 = b0
                        self._remaining = _GATHERED
                        pos = end
                        gathering = True
                        in_message = 0 if b0 & 0x80 else in_message + 1
                        message_size = 0 if b0 & 0x80 else size
                        break
                need = stop
                break
        except ProtocolError as exc:
            error = exc
        self.in_message = in_message
        self.message_size = message_size
        self.text_message = text_message
        if borrowed:
            # Keep only the unparsed tail of the caller's bytes.
            if pos < end:
                self.buf += memoryview(buf)[pos:]
            need -= pos
            pos = 0
        else:
            own = self.buf
            # Compact: drop what was parsed (cheap when everything was).
            if pos == end:
                own.clear()
                pos = 0
            elif pos > 65536 or pos > (end >> 1):
                del own[:pos]
                need -= pos
                pos = 0
        self.pos = pos
        self.need = -1 if gathering else need if need > 0 else 0
        if frames and self._kept is not None:
            if self._kept_used:
                self._kept_used = False
            else:
                self.release_kept()  # only frames that were not gathered
        return frames, error

    def _gathering_view(self, length: int) -> memoryview | None:
        """The buffer a frame of ``length`` bytes (over GATHER_MIN) is gathered in, or ``None``."""
        if length <= GATHER_KEEP:
            kept = self._kept
            if kept is None or len(kept) < length:
                kept = self._kept = _gathering_buffer(length)
            return memoryview(kept)[:length]
        try:
            target = Gather(length)
        except MemoryError:
            # The address space was refused: the receive buffer grows as the
            # payload arrives instead, by what the peer actually sent.
            return None
        self._target = target
        return memoryview(target)

    def read_simple(self, data: bytes | bytearray | memoryview, parse: Any, text: Any,
                    binary: Any) -> tuple[list[Any], bytes | bytearray | memoryview | None]:
        """Parse the common case with the C accelerator, before :meth:`read`.

        ``parse`` is :func:`wskit.mask.read_messages`: it turns the run of
        complete, unfragmented text and binary frames at the start of the
        unparsed bytes into ``text(str)`` / ``binary(bytes)`` results, and
        stops at the first other frame, leaving it (and every check that
        could fail) to :meth:`read`.

        Returns:
            ``(results, rest)``: ``rest`` is ``None`` when every byte was
            parsed, ``b""`` when unparsed bytes are left in the buffer for
            :meth:`read`, or ``data`` itself, untouched, when a message is
            in progress (only :meth:`read` continues one).
        """
        if self.in_message or self._remaining:
            return [], data
        buf = self.buf
        max_size = self.max_size
        self.need = 0
        if data:
            buf += data
        events, pos = parse(buf, self.pos, self.mask_expected, -1 if max_size is None else max_size, text, binary)
        if events:
            self.release_kept()
        if pos == len(buf):
            buf.clear()
            self.pos = 0
            return events, None
        self.pos = pos
        return events, b""

    def release_kept(self) -> None:
        """Release the kept gathering buffer (see :data:`GATHER_KEEP`), if any.

        For a caller that parsed messages that were not gathered on its own
        (as :meth:`read_simple`'s ``parse``): large messages no longer follow
        each other, so the buffer may serve another connection. Kept while
        a frame is being gathered in it.
        """
        kept = self._kept
        if kept is not None and (self._gather is None or self._target is not None):
            _release_buffer(kept)
            self._kept = None

    def gather_view(self) -> memoryview | None:
        """Where the next received bytes may be written directly, or ``None``.

        While a large frame is being gathered (``need == -1``), the part of
        its buffer still due: a transport may read straight into it and
        then call :meth:`gathered`, which saves copying the bytes from a
        read buffer. The view is valid until that call; for a frame
        gathered in its own bytes object (over :data:`GATHER_KEEP` bytes),
        :meth:`gathered` releases it. ``None`` otherwise: give received
        bytes to :meth:`read`.
        """
        payload = self._gather
        if payload is None:
            return None
        at = self._cursor.offset  # type: ignore[union-attr]  # set with _gather
        target = self._target
        if target is None:
            return payload[at:]
        # A view of its own, so that gathered() can release it: the frame's
        # bytes object is handed out without a copy only when no view of it
        # is left.
        self._release_handed()
        view = self._handed = memoryview(target)[at:]
        return view

    def _release_handed(self) -> None:
        handed = self._handed
        if handed is not None:
            self._handed = None
            try:
                handed.release()
            except BufferError:  # its holder exported it further: the frame is copied out instead
                pass

    def gathered(self, n: int) -> list[Frame]:
        """Account for ``n`` bytes written at the start of :meth:`gather_view`'s view.

        Returns:
            The frame, once those bytes complete it (unmasked, as
            :meth:`read` returns it), else an empty list.

        Raises:
            ValueError: no frame is being gathered, or ``n`` is negative or
                more than the frame still needs (a caller's mistake: the
                view it was given is exactly that long).
        """
        payload = self._gather
        cursor = self._cursor
        if payload is None or cursor is None:
            raise ValueError(f"gathered({n}): no large frame is being gathered")
        remaining = cursor.remaining
        if not 0 <= n <= remaining:
            raise ValueError(f"gathered({n}): the frame being gathered needs {remaining} more bytes")
        self._release_handed()
        if cursor.advance(n):
            return []
        self.need = 0
        return [self._gathered_frame(payload, cursor)]

    def _gathered_frame(self, payload: memoryview, cursor: PyCursor) -> Frame:
        """The frame whose payload was gathered, now complete."""
        self._gather = None
        self._cursor = None
        self._remaining = 0
        # The cursor's buffer of the payload first: a view with an export
        # left cannot be released, and a Gather with one would be copied.
        cursor.release()
        key = self._key
        target = self._target
        if target is not None:
            # Unmasked in place and handed out as it is, unless a view of it
            # was kept somewhere: then copied (Gather.take).
            self._target = None
            self._release_handed()
            payload.release()
            data = target.take(key)
        else:
            with payload:
                data = apply_mask(payload, key) if key is not None else payload.tobytes()
        b0 = self._gather_b0
        if b0 & 0x70:
            return Frame(_OPCODES[b0 & 0x0F], data, b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x20 != 0, b0 & 0x10 != 0)
        return Frame(_OPCODES[b0 & 0x0F], data, b0 & 0x80 != 0)

    def _read_rest(self, buf: bytes | bytearray | memoryview, frames: list[Frame], pos: int, end: int) -> int:
        """Deliver the next piece of a frame being streamed; return the new position."""
        avail = end - pos
        if avail == 0:
            return pos
        payload = self._gather
        if payload is not None:
            cursor: PyCursor = self._cursor  # type: ignore[assignment]  # set with _gather
            start = cursor.offset
            remaining = cursor.remaining
            take = avail if avail < remaining else remaining
            with memoryview(buf) as view:
                payload[start:start + take] = view[pos:pos + take]
            if not cursor.advance(take):
                self._kept_used = True
                frames.append(self._gathered_frame(payload, cursor))
            return pos + take
        remaining = self._remaining
        take = avail if avail < remaining else remaining
        piece = buf[pos:pos + take]
        self._remaining = remaining = remaining - take
        key = self._key
        if key is not None:
            data = apply_mask(piece, key)
            shift = take & 3
            if shift:
                self._key = key[shift:] + key[:shift]
        else:
            data = bytes(piece)
        frames.append(Frame(Opcode.CONT, data, self._fin if remaining == 0 else False))
        return pos + take


def _opname(opcode: int) -> str:
    try:
        return Opcode(opcode).name
    except ValueError:
        return f"0x{opcode:x}"
