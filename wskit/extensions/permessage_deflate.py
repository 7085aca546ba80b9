"""The permessage-deflate extension (RFC 7692).

Three public classes:

* :class:`PerMessageDeflate` is the negotiated :class:`~wskit.extensions.base.Extension`:
  per-connection compression state that turns frames into compressed frames
  (``encode``) and back (``decode``).
* :class:`ClientPerMessageDeflateFactory` builds a client's offer and checks
  the server's answer (RFC 7692 §7.1, client side).
* :class:`ServerPerMessageDeflateFactory` accepts or declines one offer of a
  client and builds the answer (RFC 7692 §7.1, server side).

Memory is the design constraint: a connection with the extension negotiated
holds no zlib object until it compresses or decompresses its first message,
and with ``*_no_context_takeover`` the objects are released at the end of
every message. ``docs/compression.md`` has the measurements.

Several offers in preference order: pass several
:class:`ClientPerMessageDeflateFactory` objects (most preferred first), or
build them with :meth:`ClientPerMessageDeflateFactory.offers`.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..exceptions import ConfigError, NegotiationError, PayloadTooBig, ProtocolError
from ..frames import CloseCode, Frame
from .base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory

__all__ = [
    "PerMessageDeflate",
    "ClientPerMessageDeflateFactory",
    "ServerPerMessageDeflateFactory",
    "DEFAULT_LEVEL",
    "DEFAULT_MEM_LEVEL",
    "DEFAULT_MIN_SIZE",
    "DEFAULT_WINDOW_BITS",
]

EXTENSION_NAME = "permessage-deflate"

DEFAULT_LEVEL = 6
"""zlib compression level used unless configured (zlib's own default)."""

DEFAULT_MEM_LEVEL = 5
"""zlib ``memLevel`` used unless configured: 16 KiB of hash tables instead of 128 KiB."""

DEFAULT_MIN_SIZE = 32
"""Unfragmented messages shorter than this many bytes are sent uncompressed."""

DEFAULT_WINDOW_BITS = 12
"""Window the server factories ask for by default (4 KiB instead of 32 KiB)."""

# RFC 7692 §7.2.1 / §7.2.2: the empty stored block that ends a sync flush;
# the sender strips it from a message, the receiver appends it back.
_TAIL = b"\x00\x00\xff\xff"
# Below this size, one decompress() call on `data + _TAIL` beats two calls.
_CONCAT_LIMIT = 4096
_SYNC_FLUSH = zlib.Z_SYNC_FLUSH
_DEFLATED = zlib.DEFLATED
_decompressobj = zlib.decompressobj
_compressobj = zlib.compressobj
_zlib_error = zlib.error
# Building a Frame through tuple.__new__ skips NamedTuple's Python-level __new__.
_tuple_new = tuple.__new__

# RFC 7692 §7.1.2.1/§7.1.2.2: a window-bits value is a decimal integer in
# 8..15 without leading zeros; these are the only valid spellings.
_WINDOW_BITS_VALUES = {str(bits): bits for bits in range(8, 16)}

_SERVER_NO_CONTEXT_TAKEOVER = "server_no_context_takeover"
_CLIENT_NO_CONTEXT_TAKEOVER = "client_no_context_takeover"
_SERVER_MAX_WINDOW_BITS = "server_max_window_bits"
_CLIENT_MAX_WINDOW_BITS = "client_max_window_bits"
_KNOWN_PARAMS = (
    _SERVER_NO_CONTEXT_TAKEOVER,
    _CLIENT_NO_CONTEXT_TAKEOVER,
    _SERVER_MAX_WINDOW_BITS,
    _CLIENT_MAX_WINDOW_BITS,
)


def _check_window_bits(name: str, value: object, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 15:
        expected = "an int in 8..15" + (" or None" if allow_none else "")
        raise ConfigError(f"permessage-deflate: {name} must be {expected}, got {value!r}")


def _compression_settings(
    compress_settings: Mapping[str, Any] | None, level: int | None, mem_level: int | None
) -> tuple[int, int]:
    """Merge ``compress_settings`` with the explicit ``level``/``mem_level``; validate."""
    settings = dict(compress_settings or {})
    for key in settings:
        if key not in ("level", "memLevel"):
            hint = " (the window is set by negotiation: *_max_window_bits)" if key == "wbits" else ""
            raise ConfigError(
                f"permessage-deflate: compress_settings key {key!r} is not supported; use 'level' or 'memLevel'{hint}"
            )
    for key, explicit in (("level", level), ("memLevel", mem_level)):
        if explicit is not None:
            if key in settings and settings[key] != explicit:
                raise ConfigError(
                    f"permessage-deflate: {key} given twice with different values "
                    f"(compress_settings={settings[key]!r}, keyword={explicit!r})"
                )
            settings[key] = explicit
    lvl = settings.get("level", DEFAULT_LEVEL)
    mem = settings.get("memLevel", DEFAULT_MEM_LEVEL)
    if isinstance(lvl, bool) or not isinstance(lvl, int) or not -1 <= lvl <= 9:
        raise ConfigError(f"permessage-deflate: level must be an int in -1..9, got {lvl!r}")
    if isinstance(mem, bool) or not isinstance(mem, int) or not 1 <= mem <= 9:
        raise ConfigError(f"permessage-deflate: memLevel (mem_level) must be an int in 1..9, got {mem!r}")
    return lvl, mem


def _check_min_size(min_size: object) -> None:
    if isinstance(min_size, bool) or not isinstance(min_size, int) or min_size < 0:
        raise ConfigError(f"permessage-deflate: min_size must be an int >= 0, got {min_size!r}")


class PerMessageDeflate(Extension):
    """permessage-deflate state of one connection (RFC 7692 §6, §7.2).

    "local" is the direction we compress (our outgoing messages), "remote"
    the direction we decompress. Factories build this object from the
    negotiated parameters; a bare :class:`~wskit.protocol.Protocol` may take
    one directly.

    The zlib objects are created on first use and, with the matching
    ``*_no_context_takeover``, dropped at the end of every message, so an
    idle connection holds none.

    Window bits 8: zlib cannot compress with a 256-byte window (it rejects
    ``wbits=-8``). When the peer limits us to 8, we compress with a 9-bit
    window and the ``Z_RLE`` strategy, whose only back-reference distance is
    1 byte, so the output is valid for any window (RFC 7692 §7.1.2.1 only
    bounds the distances a decoder must support). Received data is always
    inflated with a window of at least 9 bits, which decodes any stream
    made with 8.

    Args:
        local_no_context_takeover: reset the compressor after each message
            (RFC 7692 §7.1.1).
        remote_no_context_takeover: the peer resets its compressor after each
            message, so our decompressor is dropped after each message.
        local_max_window_bits: LZ77 window (8-15) our compressor may use.
        remote_max_window_bits: LZ77 window (8-15) the peer's compressor uses.
        level: zlib compression level (-1..9).
        mem_level: zlib ``memLevel`` (1..9).
        min_size: unfragmented messages shorter than this are sent
            uncompressed (RSV1 clear). A single message is sent uncompressed
            with ``send(message, compress=False)``: this extension declares
            :attr:`~wskit.extensions.base.Extension.compresses`.

    Raises:
        ConfigError: if a setting is out of range.
    """

    name = EXTENSION_NAME
    rsv_mask = 0x40
    # A message sent with compress=False skips encode() (so the compressor's
    # context does not move) and goes out with RSV1 clear (RFC 7692 §6).
    compresses = True

    __slots__ = (
        "_compressor",
        "_decompressor",
        "_deflating",
        "_inflating",
        "level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "min_size",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        level: int = DEFAULT_LEVEL,
        mem_level: int = DEFAULT_MEM_LEVEL,
        min_size: int = DEFAULT_MIN_SIZE,
    ) -> None:
        _check_window_bits("local_max_window_bits", local_max_window_bits, allow_none=False)
        _check_window_bits("remote_max_window_bits", remote_max_window_bits, allow_none=False)
        _compression_settings(None, level, mem_level)
        _check_min_size(min_size)
        self.local_no_context_takeover = bool(local_no_context_takeover)
        self.remote_no_context_takeover = bool(remote_no_context_takeover)
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        self._compressor: Any = None  # zlib compress object, created on first use
        self._decompressor: Any = None  # zlib decompress object, created on first use
        self._deflating = False  # sending a fragmented compressed message
        self._inflating = False  # receiving a fragmented compressed message

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_max_window_bits={self.local_max_window_bits}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, level={self.level}, "
            f"mem_level={self.mem_level}, min_size={self.min_size})"
        )

    # -- outgoing ----------------------------------------------------------

    def _new_compressor(self) -> Any:
        bits = self.local_max_window_bits
        if bits == 8:
            # zlib rejects a raw 8-bit window; Z_RLE only emits distance-1
            # matches, which fit any window (see the class docstring).
            return _compressobj(self.level, _DEFLATED, -9, self.mem_level, zlib.Z_RLE)
        return _compressobj(self.level, _DEFLATED, -bits, self.mem_level)

    def encode(self, frame: Frame) -> Frame:
        """Compress an outgoing frame.

        Control frames pass unchanged. A message is compressed as a whole:
        the first frame gets RSV1 (RFC 7692 §6), every frame is sync-flushed
        so the peer can inflate it on arrival, and the final frame loses the
        trailing ``00 00 ff ff`` (RFC 7692 §7.2.1). An unfragmented message
        shorter than ``min_size`` is sent as is.

        Args:
            frame: the frame to send (TEXT/BINARY, then CONT frames for a
                fragmented message, or a control frame).

        Returns:
            The frame to serialize.
        """
        opcode = frame.opcode
        if opcode >= 8:  # RFC 7692 §6.1: control frames are never compressed
            return frame
        fin = frame.fin
        if opcode == 0:
            if not self._deflating:  # continuation of a message sent uncompressed
                return frame
        elif fin:
            if len(frame.data) < self.min_size:
                return frame
        else:
            # A fragmented message's size is unknown at its first frame: compress.
            self._deflating = True
        compressor = self._compressor
        if compressor is None:
            compressor = self._compressor = self._new_compressor()
        data = compressor.compress(frame.data)
        # RFC 7692 §7.2.1: flush with an empty stored block (Z_SYNC_FLUSH) ...
        flushed = compressor.flush(_SYNC_FLUSH)
        if fin:
            # ... and remove its 4 trailing octets 00 00 ff ff from the message.
            data = data + flushed[:-4] if data else flushed[:-4]
            self._deflating = False
            if self.local_no_context_takeover:
                self._compressor = None  # RFC 7692 §7.1.1.1: next message starts afresh
        else:
            data += flushed
        # RFC 7692 §6: RSV1 marks a compressed message on its first frame only.
        return _tuple_new(Frame, (opcode, data, fin, opcode != 0, frame.rsv2, frame.rsv3))

    # -- incoming ----------------------------------------------------------

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Decompress an incoming frame.

        Args:
            frame: a received frame, unmasked, in wire order (data frames and
                control frames alike).
            max_size: how many more decompressed bytes the current message
                may hold; ``None`` for no limit.

        Returns:
            The frame with its payload decompressed and RSV1 cleared.

        Raises:
            ProtocolError: close code 1002 for RSV1 on a control frame or on a
                continuation frame, or a new data frame inside a compressed
                fragmented message; close code 1007 for data that does not
                inflate.
            PayloadTooBig: close code 1009 when the decompressed data exceeds
                ``max_size`` (at most ``max_size + 1`` bytes are inflated).
        """
        opcode = frame.opcode
        if opcode >= 8:
            if frame.rsv1:  # RFC 7692 §6.1: RSV1 is only set on data frames
                raise ProtocolError(
                    f"RSV1 set on a control frame (opcode {opcode:#x}); permessage-deflate never compresses "
                    "control frames",
                    close_code=CloseCode.PROTOCOL_ERROR,
                )
            return frame
        if opcode == 0:
            if frame.rsv1:  # RFC 7692 §6.1: RSV1 only on the first frame of a message
                raise ProtocolError(
                    "RSV1 set on a continuation frame; permessage-deflate sets it on the first frame only",
                    close_code=CloseCode.PROTOCOL_ERROR,
                )
            if not self._inflating:  # continuation of an uncompressed message
                return frame
        else:
            if self._inflating:
                raise ProtocolError(
                    f"new data frame (opcode {opcode:#x}) inside a fragmented compressed message; "
                    "expected a continuation frame",
                    close_code=CloseCode.PROTOCOL_ERROR,
                )
            if not frame.rsv1:
                return frame
            self._inflating = True
        decompressor = self._decompressor
        if decompressor is None:
            # A window of 9 bits or more also inflates streams made with 8.
            bits = self.remote_max_window_bits
            decompressor = self._decompressor = _decompressobj(-bits if bits > 8 else -9)
        fin = frame.fin
        data = frame.data
        try:
            if max_size is None:
                if fin:
                    # RFC 7692 §7.2.2: append 00 00 ff ff to the message's payload.
                    if len(data) < _CONCAT_LIMIT and not isinstance(data, memoryview):
                        out = decompressor.decompress(data + _TAIL)
                    else:
                        out = decompressor.decompress(data)
                        more = decompressor.decompress(_TAIL)
                        if more:
                            out += more
                else:
                    out = decompressor.decompress(data)
            else:
                limit = max_size + 1 if max_size > 0 else 1  # max_length=0 would mean "no limit"
                if fin and len(data) < _CONCAT_LIMIT and not isinstance(data, memoryview):
                    out = decompressor.decompress(data + _TAIL, limit)  # RFC 7692 §7.2.2
                else:
                    out = decompressor.decompress(data, limit)
                    if fin and len(out) <= max_size:
                        more = decompressor.decompress(_TAIL, limit - len(out))  # RFC 7692 §7.2.2
                        if more:
                            out += more
                if len(out) > max_size:
                    self._decompressor = None  # the connection fails; free the window now
                    raise PayloadTooBig(
                        f"decompressed message exceeds max_size: this frame inflates to more than the "
                        f"{max_size} bytes the message may still grow by",
                        close_code=CloseCode.MESSAGE_TOO_BIG,
                    )
        except _zlib_error as exc:
            self._decompressor = None
            raise ProtocolError(
                f"invalid permessage-deflate data in {'final' if fin else 'non-final'} frame "
                f"(opcode {opcode:#x}, {len(data)} bytes): {exc}",
                close_code=CloseCode.INVALID_DATA,
            ) from None
        if decompressor.eof:
            # The peer ended the deflate stream (a BFINAL block, RFC 7692 §7.2.3.4).
            # Only our own appended 00 00 ff ff may follow it.
            unused = decompressor.unused_data
            if unused and not (fin and unused == _TAIL):
                self._decompressor = None
                raise ProtocolError(
                    f"data after the end of the deflate stream in a permessage-deflate message "
                    f"(opcode {opcode:#x}, {len(unused)} unused bytes)",
                    close_code=CloseCode.INVALID_DATA,
                )
        if fin:
            self._inflating = False
            # RFC 7692 §7.1.1: without context takeover the next message starts a
            # new stream; a stream that ended (BFINAL) cannot be continued either.
            if self.remote_no_context_takeover or decompressor.eof:
                self._decompressor = None
        return _tuple_new(Frame, (opcode, out, fin, False, frame.rsv2, frame.rsv3))


# -- negotiation (RFC 7692 §7.1) ---------------------------------------------


def _parse_params(params: Sequence[ExtensionParameter], where: str) -> dict[str, str | None]:
    """Map parameter names to values; unknown or repeated names are errors (RFC 7692 §7)."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _KNOWN_PARAMS:
            raise NegotiationError(f"permessage-deflate {where}: unknown parameter {name!r}")
        if name in seen:
            raise NegotiationError(f"permessage-deflate {where}: parameter {name} appears more than once")
        seen[name] = value
    return seen


def _flag(seen: Mapping[str, str | None], name: str, where: str) -> bool:
    """Return whether a valueless parameter is present; a value is an error."""
    if name not in seen:
        return False
    if seen[name] is not None:
        # RFC 7692 §7.1.1.1/§7.1.1.2: these parameters have no value.
        raise NegotiationError(f"permessage-deflate {where}: {name} takes no value, got {seen[name]!r}")
    return True


def _bits(seen: Mapping[str, str | None], name: str, where: str, *, value_required: bool) -> int | None:
    """Return a window-bits parameter's value (None if absent or valueless)."""
    if name not in seen:
        return None
    value = seen[name]
    if value is None:
        if value_required:
            raise NegotiationError(f"permessage-deflate {where}: {name} needs a value in 8..15")
        return None
    bits = _WINDOW_BITS_VALUES.get(value)
    if bits is None:
        raise NegotiationError(f"permessage-deflate {where}: {name}={value!r} is not an integer in 8..15")
    return bits


def _check_rsv1_free(accepted_extensions: Sequence[Extension], where: str) -> None:
    for ext in accepted_extensions:
        if ext.rsv_mask & 0x40:
            raise NegotiationError(
                f"permessage-deflate {where}: RSV1 is already used by the negotiated extension {ext.name!r}"
            )


class _DeflateSettings:
    """The settings both permessage-deflate factories take, validated in one place."""

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    level: int
    mem_level: int
    min_size: int

    def _configure(
        self,
        server_no_context_takeover: bool,
        client_no_context_takeover: bool,
        server_max_window_bits: int | None,
        client_max_window_bits: int | None,
        compress_settings: Mapping[str, Any] | None,
        level: int | None,
        mem_level: int | None,
        min_size: int,
    ) -> None:
        """Check every setting (``client_max_window_bits`` is only checked: each side stores its own).

        Raises:
            ConfigError: if a setting is out of range (it names the setting).
        """
        _check_window_bits("server_max_window_bits", server_max_window_bits)
        _check_window_bits("client_max_window_bits", client_max_window_bits)
        self.level, self.mem_level = _compression_settings(compress_settings, level, mem_level)
        _check_min_size(min_size)
        self.server_no_context_takeover = bool(server_no_context_takeover)
        self.client_no_context_takeover = bool(client_no_context_takeover)
        self.server_max_window_bits = server_max_window_bits
        self.min_size = min_size


class ClientPerMessageDeflateFactory(_DeflateSettings, ClientExtensionFactory):
    """Offer permessage-deflate from a client (RFC 7692 §7.1).

    Args:
        server_no_context_takeover: ask the server to reset its compressor
            after every message (saves our decompression memory between
            messages); the server must then confirm it.
        client_no_context_takeover: announce that we reset our compressor
            after every message (RFC 7692 §7.1.1.2); we do so whatever the
            server answers.
        server_max_window_bits: ask the server to use a window of at most
            this many bits (8-15); the server must confirm with the same or
            a smaller value. ``None`` does not ask.
        client_max_window_bits: ``True`` (default) offers the parameter
            without a value, letting the server cap our window; an int 8-15
            also promises never to use a larger window; ``None`` omits it
            (the server may then not cap our window).
        compress_settings: ``{"level": ..., "memLevel": ...}`` for zlib.
        level: zlib compression level (-1..9), default 6.
        mem_level: zlib ``memLevel`` (1..9), default 5.
        min_size: unfragmented messages shorter than this many bytes are sent
            uncompressed (default 32).

    Raises:
        ConfigError: if a setting is out of range.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | Literal[True] | None = True,
        compress_settings: Mapping[str, Any] | None = None,
        level: int | None = None,
        mem_level: int | None = None,
        min_size: int = DEFAULT_MIN_SIZE,
    ) -> None:
        # True: offered without a value (RFC 7692 §7.1.2.2), nothing to check.
        self._configure(server_no_context_takeover, client_no_context_takeover, server_max_window_bits,
                        None if client_max_window_bits is True else client_max_window_bits,
                        compress_settings, level, mem_level, min_size)
        self.client_max_window_bits = client_max_window_bits

    @classmethod
    def offers(cls, *variants: Mapping[str, Any], **common: Any) -> list[ClientPerMessageDeflateFactory]:
        """Build several offers, most preferred first (RFC 7692 §7.1.3 shows why).

        Example: ``extensions=ClientPerMessageDeflateFactory.offers({"server_max_window_bits": 10}, {})``
        asks for a small server window and falls back to a plain offer if
        the server declines the first.

        Args:
            *variants: keyword arguments for each offer.
            **common: keyword arguments shared by every offer (a variant wins).

        Returns:
            One factory per variant, in order; pass them all to the client.
        """
        return [cls(**{**common, **variant}) for variant in variants]

    def __repr__(self) -> str:
        return f"<ClientPerMessageDeflateFactory {self.get_request_params()!r}>"

    def get_request_params(self) -> list[ExtensionParameter]:
        """Return the parameters of this offer.

        Returns:
            ``(name, value)`` pairs for one ``permessage-deflate`` item.
        """
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
        if self.client_no_context_takeover:
            params.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
        if self.server_max_window_bits is not None:
            params.append((_SERVER_MAX_WINDOW_BITS, str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append((_CLIENT_MAX_WINDOW_BITS, None))
        elif self.client_max_window_bits is not None:
            params.append((_CLIENT_MAX_WINDOW_BITS, str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> PerMessageDeflate:
        """Check the server's answer to this offer and build the extension.

        Args:
            params: the parameters of the server's ``permessage-deflate`` item.
            accepted_extensions: extensions already accepted in this response.

        Returns:
            The negotiated extension.

        Raises:
            NegotiationError: if the answer is not a valid answer to this offer
                (RFC 7692 §7: unknown or repeated parameter, invalid value,
                or a configuration this offer did not allow).
        """
        where = "response"
        _check_rsv1_free(accepted_extensions, where)
        seen = _parse_params(params, where)
        server_nct = _flag(seen, _SERVER_NO_CONTEXT_TAKEOVER, where)
        client_nct = _flag(seen, _CLIENT_NO_CONTEXT_TAKEOVER, where)
        server_bits = _bits(seen, _SERVER_MAX_WINDOW_BITS, where, value_required=True)
        client_bits = _bits(seen, _CLIENT_MAX_WINDOW_BITS, where, value_required=True)

        # RFC 7692 §7.1.1.1: a server accepting server_no_context_takeover MUST echo it.
        if self.server_no_context_takeover and not server_nct:
            raise NegotiationError(
                "permessage-deflate response: server_no_context_takeover was requested but is missing"
            )
        # RFC 7692 §7.1.2.1: the server MUST answer server_max_window_bits <= the requested value.
        if self.server_max_window_bits is not None:
            if server_bits is None:
                raise NegotiationError(
                    f"permessage-deflate response: server_max_window_bits={self.server_max_window_bits} was "
                    "requested but is missing"
                )
            if server_bits > self.server_max_window_bits:
                raise NegotiationError(
                    f"permessage-deflate response: server_max_window_bits={server_bits} is larger than the "
                    f"requested {self.server_max_window_bits}"
                )
        # RFC 7692 §7.1.2.2: no client_max_window_bits in the response unless offered.
        if client_bits is not None:
            if self.client_max_window_bits is None:
                raise NegotiationError(
                    "permessage-deflate response: client_max_window_bits was not offered, so the server may not "
                    "set it"
                )
            if self.client_max_window_bits is not True and client_bits > self.client_max_window_bits:
                raise NegotiationError(
                    f"permessage-deflate response: client_max_window_bits={client_bits} is larger than the "
                    f"offered {self.client_max_window_bits}"
                )
            local_bits = client_bits
        elif isinstance(self.client_max_window_bits, int) and self.client_max_window_bits is not True:
            local_bits = self.client_max_window_bits  # RFC 7692 §7.1.2.2: our own promise
        else:
            local_bits = 15
        return PerMessageDeflate(
            local_no_context_takeover=self.client_no_context_takeover or client_nct,
            remote_no_context_takeover=server_nct,
            local_max_window_bits=local_bits,
            remote_max_window_bits=15 if server_bits is None else server_bits,
            level=self.level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )


class ServerPerMessageDeflateFactory(_DeflateSettings, ServerExtensionFactory):
    """Accept permessage-deflate offers on a server (RFC 7692 §7.1).

    The protocol calls :meth:`process_request_params` for each offered
    ``permessage-deflate`` item in the client's order; the first one accepted
    wins. An offer this factory cannot honour raises
    :class:`~wskit.exceptions.NegotiationError` (declined, not a failure).

    Args:
        server_no_context_takeover: always reset our compressor after every
            message (and say so). Also done whenever the client asks.
        client_no_context_takeover: require the client to reset its
            compressor after every message, so our decompressor is freed
            between messages. Also answered whenever the client offers it.
        server_max_window_bits: the largest window (8-15) we compress with;
            answered to every client (RFC 7692 §7.1.2.1 allows it unasked), or
            the client's own smaller request. ``None`` uses 15, or what the
            client asks. Default 12.
        client_max_window_bits: the window (8-15) we ask the client to stay
            within, when the client offers ``client_max_window_bits`` (a
            server may not ask otherwise, RFC 7692 §7.1.2.2). ``None`` asks
            nothing. Default 12.
        compress_settings: ``{"level": ..., "memLevel": ...}`` for zlib.
        level: zlib compression level (-1..9), default 6.
        mem_level: zlib ``memLevel`` (1..9), default 5.
        min_size: unfragmented messages shorter than this many bytes are sent
            uncompressed (default 32).

    Raises:
        ConfigError: if a setting is out of range.
    """

    name = EXTENSION_NAME

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = DEFAULT_WINDOW_BITS,
        client_max_window_bits: int | None = DEFAULT_WINDOW_BITS,
        compress_settings: Mapping[str, Any] | None = None,
        level: int | None = None,
        mem_level: int | None = None,
        min_size: int = DEFAULT_MIN_SIZE,
    ) -> None:
        self._configure(server_no_context_takeover, client_no_context_takeover, server_max_window_bits,
                        client_max_window_bits, compress_settings, level, mem_level, min_size)
        self.client_max_window_bits = client_max_window_bits

    def __repr__(self) -> str:
        return (
            f"<ServerPerMessageDeflateFactory server_no_context_takeover={self.server_no_context_takeover} "
            f"client_no_context_takeover={self.client_no_context_takeover} "
            f"server_max_window_bits={self.server_max_window_bits} "
            f"client_max_window_bits={self.client_max_window_bits}>"
        )

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        """Accept one offer: build the answer and the extension.

        Args:
            params: the parameters of one offered ``permessage-deflate`` item.
            accepted_extensions: extensions the server already accepted.

        Returns:
            The response parameters and the negotiated extension.

        Raises:
            NegotiationError: to decline this offer (RFC 7692 §7: unknown or
                repeated parameter, invalid value, or RSV1 already taken).
        """
        where = "offer"
        _check_rsv1_free(accepted_extensions, where)
        seen = _parse_params(params, where)
        offered_server_nct = _flag(seen, _SERVER_NO_CONTEXT_TAKEOVER, where)
        offered_client_nct = _flag(seen, _CLIENT_NO_CONTEXT_TAKEOVER, where)
        # RFC 7692 §7.1.2.1: server_max_window_bits in an offer has a value.
        requested_server_bits = _bits(seen, _SERVER_MAX_WINDOW_BITS, where, value_required=True)
        # RFC 7692 §7.1.2.2: client_max_window_bits in an offer may have no value.
        offered_client_bits = _bits(seen, _CLIENT_MAX_WINDOW_BITS, where, value_required=False)
        client_bits_offered = _CLIENT_MAX_WINDOW_BITS in seen

        response: list[ExtensionParameter] = []
        # RFC 7692 §7.1.1.1: MUST echo server_no_context_takeover when offered.
        server_nct = self.server_no_context_takeover or offered_server_nct
        if server_nct:
            response.append((_SERVER_NO_CONTEXT_TAKEOVER, None))
        # RFC 7692 §7.1.1.2: answering client_no_context_takeover makes it binding.
        client_nct = self.client_no_context_takeover or offered_client_nct
        if client_nct:
            response.append((_CLIENT_NO_CONTEXT_TAKEOVER, None))
        # RFC 7692 §7.1.2.1: answer the same or a smaller value than requested;
        # a server may also answer it unasked.
        candidates = [b for b in (requested_server_bits, self.server_max_window_bits) if b is not None]
        server_bits = min(candidates) if candidates else 15
        if candidates:
            response.append((_SERVER_MAX_WINDOW_BITS, str(server_bits)))
        # RFC 7692 §7.1.2.2: only when offered, with a value <= the offered one.
        client_bits = 15
        if client_bits_offered:
            candidates = [b for b in (offered_client_bits, self.client_max_window_bits) if b is not None]
            if candidates:
                client_bits = min(candidates)
                response.append((_CLIENT_MAX_WINDOW_BITS, str(client_bits)))
        extension = PerMessageDeflate(
            local_no_context_takeover=server_nct,
            remote_no_context_takeover=client_nct,
            local_max_window_bits=server_bits,
            remote_max_window_bits=client_bits,
            level=self.level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )
        return response, extension
