"""The sans-I/O WebSocket data path (RFC 6455 §5-§7): :class:`Protocol`.

Import it from :mod:`wskit.protocol` (or :mod:`wskit`); this module holds
the class so that :mod:`wskit.client` and :mod:`wskit.server` can build on
it without an import circle.

:class:`Protocol` turns received bytes into events and calls into bytes to
send. It never touches a socket: the caller writes what ``send_*`` return
and feeds what it reads to ``receive_data``. The state machine it follows is
declared in ``specs/connection.yaml`` (see :mod:`wskit.statemachine`).
"""

from __future__ import annotations

import codecs
import collections
import enum
import functools
import inspect
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from .defaults import MAX_SIZE
from .events import (
    BinaryMessage,
    Close,
    ConnectionClosed,
    Event,
    Ping,
    Pong,
    TextMessage,
)
from .exceptions import ConnectionClosedError, InvalidState, PayloadTooBig, PluginError, ProtocolError
from .frames import (
    BINARY_HEADERS,
    TEXT_HEADERS,
    CloseCode,
    Frame,
    FrameReader,
    Opcode,
    byte_view,
    encode_frame,
    encode_message,
    parse_close,
    serialize_close,
    serialize_frame,
)
from .mask import read_messages
from .plugin import PluginManager, default_manager
from .statemachine import State, StateInfo, StateSpec, Trigger, load_spec

if TYPE_CHECKING:
    from .extensions.base import Extension

__all__ = ["Protocol", "Side", "State", "LoggerLike"]

LoggerLike = logging.Logger | logging.LoggerAdapter  # type: ignore[type-arg]


class Side(enum.Enum):
    """Which end of the connection a protocol object plays."""

    CLIENT = "client"
    SERVER = "server"

    def __str__(self) -> str:
        return f"Side.{self.name}"


_LOGGER = logging.getLogger("wskit.protocol")
_NO_PARTS: list[Any] = []  # shared placeholder: never appended to (CONT needs a started message)
_new_utf8_decoder = codecs.getincrementaldecoder("utf-8")

INTERNAL_ERROR_REASON = "internal error"
"""The Close reason sent with 1011 when an extension or plugin raised: what
it raised stays on this side (logged, and in the exception the application
gets)."""

# Slack allowed on the wire size of a message when extensions may change
# sizes (deflate can expand incompressible data slightly): the decoded size
# is still checked exactly against max_size.
_WIRE_SLACK = 4096


def _truncate_utf8(text: str, limit: int = 123) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode("utf-8", "ignore") + "..."


class Protocol:
    """A WebSocket connection's protocol state, without I/O.

    Args:
        side: :attr:`Side.CLIENT` (frames are masked) or :attr:`Side.SERVER`.
        logger: a :class:`logging.Logger` or :class:`logging.LoggerAdapter`;
            defaults to the ``wskit.protocol`` logger.
        max_size: limit on the size of a received message, after extensions
            decoded it (close code 1009 beyond it); ``None`` for no limit.
        extensions: already negotiated :class:`~wskit.extensions.base.Extension`
            objects (on a bare ``Protocol``; the client and server classes
            negotiate theirs in the handshake).
        state: the initial state; a bare ``Protocol`` starts ``OPEN``.
        max_fragment_size: split outgoing messages into frames of at most
            this many payload bytes; ``None`` (default) sends one frame.
        plugins: plugin objects to add to the default set (a dedicated plugin
            manager is built once per distinct list and reused).
        plugin_manager: a :class:`~wskit.plugin.PluginManager` to use instead.
        spec: a state-machine spec (path or :class:`StateSpec`) replacing
            ``specs/connection.yaml``.

    Raises:
        ValueError: for a negative ``max_size`` or ``max_fragment_size``.
    """

    __slots__ = (
        "_side",
        "_spec",
        "_sm_state",
        "_si",
        "logger",
        "_debug",
        "_max_size",
        "_max_fragment_size",
        "_mask",
        "_reader",
        "_extensions",
        "_encoders",
        "_decoders",
        "_plugins",
        "_on_sent",
        "_on_rx",
        "_close_code",
        "_close_reason",
        "_failure",
        "_msg_text",
        "_msg_parts",
        "_msg_decoder",
        "_msg_size",
        "_subprotocol",
        "_plain_send",
        "_out_message",
        "_out_raw",
        "_uncompressed",
        "_fast",
    )

    def __init__(
        self,
        side: Side,
        *,
        logger: LoggerLike | None = None,
        max_size: int | None = MAX_SIZE,
        extensions: Sequence[Extension] | None = None,
        state: State | None = None,
        max_fragment_size: int | None = None,
        plugins: Sequence[object] | None = None,
        plugin_manager: PluginManager | None = None,
        spec: str | os.PathLike[str] | StateSpec | None = None,
    ) -> None:
        if not isinstance(side, Side):
            side = Side(side)
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be None or >= 0, got {max_size}")
        if max_fragment_size is not None and max_fragment_size < 1:
            raise ValueError(f"max_fragment_size must be None or >= 1, got {max_fragment_size}")
        self._side = side
        self._spec = spec if isinstance(spec, StateSpec) else load_spec(spec)
        if state is None:
            state = self._default_state()
        self._sm_state = self._spec.initial_for(state)
        self._si: StateInfo = self._spec.states[self._sm_state]
        if logger is None:
            logger = _LOGGER
        self.logger = logger
        self._debug = logger.isEnabledFor(logging.DEBUG)
        self._max_size = max_size
        self._max_fragment_size = max_fragment_size
        self._mask = side is Side.CLIENT
        if plugin_manager is None:
            plugin_manager = _manager_for(plugins) if plugins else default_manager()
        self._plugins = plugin_manager
        self._on_sent = plugin_manager.frame_sent
        self._on_rx = plugin_manager.frame_received
        self._reader = FrameReader(side is Side.SERVER, max_size, 0, self._on_rx is None)
        # The C accelerator's parser of simple frames, when no extension or
        # observer needs to see frames (see FrameReader.read_simple).
        self._fast = read_messages if self._on_rx is None else None
        self._extensions: list[Extension] = []
        self._encoders: list[Any] | None = None
        self._decoders: list[Any] | None = None
        self._close_code: int | None = None
        self._close_reason: str | None = None
        # The exception that failed the connection, for reporting; whether the
        # connection failed is the state's fact (StateInfo.failed).
        self._failure: ProtocolError | None = None
        self._msg_text = False
        self._msg_parts: list[Any] = _NO_PARTS  # replaced when a fragmented message starts
        self._msg_decoder: Any = None
        self._msg_size = 0
        self._subprotocol: str | None = None
        self._out_message = 0  # opcode of a fragmented message being sent, or 0
        self._out_raw = False  # that fragmented message is sent with compress=False
        # The extensions that still encode a message sent with compress=False,
        # or None when no extension compresses (compress=False changes nothing).
        self._uncompressed: list[Extension] | None = None
        self._plain_send = True  # see _update_plain_send
        self._update_plain_send()
        if extensions:
            self._set_extensions(list(extensions))

    def _default_state(self) -> State:
        return State.OPEN

    # -- properties ---------------------------------------------------------

    @property
    def state(self) -> State:
        """The connection's public state (CONNECTING, OPEN, CLOSING, CLOSED)."""
        return self._si.public

    @property
    def side(self) -> Side:
        """:attr:`Side.CLIENT` or :attr:`Side.SERVER`."""
        return self._side

    @property
    def close_code(self) -> int | None:
        """The close code: the peer's (from its Close frame), ours when we
        failed the connection, 1006 when the transport closed without a close
        handshake; ``None`` while none of these happened."""
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason that goes with :attr:`close_code`."""
        return self._close_reason

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or ``None``."""
        return self._subprotocol

    @property
    def extensions(self) -> list[Extension]:
        """The negotiated extensions, in the order they were negotiated."""
        return list(self._extensions)

    @property
    def max_size(self) -> int | None:
        """The limit on a received message's size (``None``: no limit)."""
        return self._max_size

    @property
    def plugin_manager(self) -> PluginManager:
        """The plugin manager this protocol uses."""
        return self._plugins

    # -- the closing handshake's facts, read by the I/O layers ----------------
    # Each is a fact the spec declares for the current state (StateInfo).

    @property
    def close_sent(self) -> bool:
        """Whether we wrote a Close frame (or one is in a failure's ``to_send``)."""
        return self._si.close_sent

    @property
    def close_received(self) -> bool:
        """Whether the peer's Close frame was received."""
        return self._si.close_received

    @property
    def failure(self) -> ProtocolError | None:
        """The protocol violation that failed the connection, if any."""
        return self._failure if self._si.failed else None

    @property
    def may_send_close(self) -> bool:
        """Whether :meth:`send_close` is allowed now: to start the closing
        handshake, or to answer the peer's Close."""
        return self._si.send_close

    @property
    def close_answer_may_wait(self) -> bool:
        """Whether the peer's Close was received and ours is still unsent, so
        that our answer may wait until the application has taken the messages
        that arrived before the peer's Close (RFC 6455 §5.5.1)."""
        return self._si.answer_may_wait

    @property
    def closed_cleanly(self) -> bool:
        """Whether the closing handshake completed: a Close sent and one
        received, without a protocol failure (RFC 6455 §7.1.4)."""
        return self._si.clean

    @property
    def closes_transport_first(self) -> bool:
        """Whether this side closes the TCP connection once the closing
        handshake is over or the connection failed; the other side waits for
        it (RFC 6455 §7.1.1: the server closes first)."""
        return self._spec.closes_transport_first == self._side.value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._side.value} {self._si.public.value} ({self._sm_state})>"

    # -- state machine ------------------------------------------------------

    def _fire(self, trigger: str) -> None:
        old = self._si
        if trigger not in old.triggers:
            raise InvalidState(f"cannot {trigger.replace('_', ' ')} in state {old.public.name} ({old.description})")
        self._si = new = self._spec.fire(self, trigger)
        if new.public is not old.public:
            hook = self._plugins.state_changed
            if hook is not None:
                try:
                    hook(protocol=self, old=old.public, new=new.public, trigger=trigger)
                except Exception as exc:  # a plugin's bug must not corrupt our state
                    self.logger.error("%s (the state change stands)", exc, exc_info=True)

    def _set_extensions(self, extensions: list[Extension]) -> None:
        self._extensions = extensions
        self._encoders = [ext.encode for ext in extensions] or None
        if any(getattr(ext, "compresses", False) for ext in extensions):
            self._uncompressed = [ext for ext in extensions if not getattr(ext, "compresses", False)]
        else:
            self._uncompressed = None
        self._decoders = [_decoder_of(ext) for ext in reversed(extensions)] or None
        rsv = 0
        for ext in extensions:
            rsv |= getattr(ext, "rsv_mask", 0)
        reader = self._reader
        reader.rsv_mask = rsv
        reader.stream = not extensions and self._on_rx is None
        self._fast = read_messages if reader.stream else None
        if extensions and self._max_size is not None:
            reader.max_size = self._max_size + self._max_size // 8 + _WIRE_SLACK
        else:
            reader.max_size = self._max_size
        self._update_plain_send()

    def _update_plain_send(self) -> None:
        # True when a message goes out as one frame built by encode_frame:
        # no extension, no fragmentation, no observer, no fragmented message open.
        self._plain_send = (self._encoders is None and self._max_fragment_size is None
                            and self._on_sent is None and not self._out_message)

    # -- sending ------------------------------------------------------------

    def _check_send(self, what: str) -> None:
        si = self._si
        raise InvalidState(f"cannot send {what} in state {si.public.name} ({si.description})")

    def send_text(self, data: str, fin: bool = True, *, compress: bool = True) -> list[bytes]:
        """Build the frames of a text message.

        Args:
            data: the message.
            fin: ``False`` to send only the first fragment of a message that
                :meth:`send_continuation` completes.
            compress: ``False`` to send this message uncompressed: extensions
                that compress (``Extension.compresses``, e.g.
                permessage-deflate) leave it alone and keep their state, the
                other extensions still apply. For a fragmented message it
                holds for every fragment. No effect without such an extension.

        Returns:
            Bytes to write to the transport, in order.

        Raises:
            InvalidState: if data may not be sent in the current state, or a
                fragmented message is still open.
        """
        if not self._si.send_data:
            self._check_send("a text message")
        try:
            payload = data.encode("utf-8")
        except AttributeError:
            raise TypeError(f"send_text() takes a str, got {type(data).__name__} (use send_binary for bytes)") from None
        if fin and self._plain_send:
            if len(payload) < 126 and not self._mask:
                return [TEXT_HEADERS[len(payload)] + payload]
            return encode_message(0x81, payload, self._mask)
        return self._send_message(Opcode.TEXT, payload, fin, compress)

    def send_binary(self, data: bytes | bytearray | memoryview, fin: bool = True, *,
                    compress: bool = True) -> list[bytes]:
        """Build the frames of a binary message.

        Args:
            data: the message.
            fin: ``False`` to send only the first fragment of a message that
                :meth:`send_continuation` completes.
            compress: ``False`` to send this message uncompressed (see
                :meth:`send_text`).

        Returns:
            Bytes to write to the transport, in order.

        Raises:
            InvalidState: if data may not be sent in the current state.
        """
        if not self._si.send_data:
            self._check_send("a binary message")
        if isinstance(data, str):  # type: ignore[unreachable]  # a caller bug, reported clearly
            raise TypeError("send_binary() takes bytes-like data, got str (use send_text for text)")
        if fin and self._plain_send:
            if type(data) is bytes and len(data) < 126 and not self._mask:
                return [BINARY_HEADERS[len(data)] + data]
            return encode_message(0x82, data, self._mask)
        return self._send_message(Opcode.BINARY, bytes(data), fin, compress)

    def send_continuation(self, data: str | bytes | bytearray | memoryview, fin: bool) -> list[bytes]:
        """Build the next fragment of a message started with ``fin=False``.

        The fragment is compressed, or not, as the message's first one was
        (``compress=`` of :meth:`send_text` / :meth:`send_binary`).

        Args:
            data: the fragment (``str`` is encoded as UTF-8; each fragment of a
                text message must be whole characters).
            fin: ``True`` for the last fragment.

        Returns:
            Bytes to write to the transport, in order.

        Raises:
            InvalidState: if no fragmented message is open, or data may not be
                sent in the current state.
        """
        if not self._si.send_data:
            self._check_send("a continuation frame")
        if not self._out_message:
            raise InvalidState("send_continuation() needs a message started with send_text/send_binary(fin=False)")
        payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return self._send_message(Opcode.CONT, payload, fin, not self._out_raw)

    def send_ping(self, data: bytes | bytearray | memoryview | str = b"") -> list[bytes]:
        """Build a Ping frame (a ``str`` is encoded as UTF-8).

        Raises:
            InvalidState: if control frames may not be sent in this state.
            ProtocolError: if the payload is longer than 125 bytes.
        """
        if not self._si.send_data:
            self._check_send("a Ping")
        return self._send_control(Opcode.PING, data)

    def send_pong(self, data: bytes | bytearray | memoryview | str = b"") -> list[bytes]:
        """Build a Pong frame (a ``str`` is encoded as UTF-8).

        Raises:
            InvalidState: if control frames may not be sent in this state.
            ProtocolError: if the payload is longer than 125 bytes.
        """
        if not self._si.send_data:
            self._check_send("a Pong")
        return self._send_control(Opcode.PONG, data)

    def send_close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> list[bytes]:
        """Build a Close frame: start the closing handshake, or answer the peer's.

        ``send_close(1005, "")`` sends a Close frame without payload, so a
        received ``Close(1005, "")`` can be echoed back.

        Args:
            code: the close code (RFC 6455 §7.4).
            reason: the close reason, at most 123 bytes in UTF-8.

        Returns:
            Bytes to write to the transport.

        Raises:
            InvalidState: if a Close may not be sent now (before the handshake,
                after we already sent one, after a protocol failure).
            ProtocolError: if the code may not be sent or the reason is too long.
        """
        si = self._si
        if not si.send_close:
            raise InvalidState(f"cannot send a Close in state {si.public.name} ({si.description})")
        payload = serialize_close(code, reason)
        out = self._send_control(Opcode.CLOSE, payload)
        self._fire(Trigger.SEND_CLOSE)
        return out

    def _send_control(self, opcode: Opcode, data: bytes | bytearray | memoryview | str) -> list[bytes]:
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif type(data) is memoryview and not byte_view(data):
            data = data.tobytes()  # len() must count bytes
        if len(data) > 125:
            # RFC 6455 §5.5: control frames carry at most 125 bytes.
            raise ProtocolError(f"{opcode.name} payload is {len(data)} bytes; control frames allow at most 125")
        if self._encoders is None and self._on_sent is None:
            return [encode_frame(0x80 | opcode, data, self._mask)]
        return [self._emit(Frame(opcode, bytes(data)))]

    def _send_message(self, opcode: Opcode, payload: bytes, fin: bool = True, compress: bool = True) -> list[bytes]:
        if opcode is not Opcode.CONT and self._out_message:
            # RFC 6455 §5.4: fragments of one message are not interleaved with another.
            raise InvalidState("a fragmented message is being sent: finish it with send_continuation(..., fin=True)")
        emit = self._emit if compress or self._uncompressed is None else self._emit_uncompressed
        size = self._max_fragment_size
        if size is None or len(payload) <= size:
            out = [emit(Frame(opcode, payload, fin))]
        else:
            out = []
            n = len(payload)
            for start in range(0, n, size):
                chunk = payload[start:start + size]
                last = fin and start + size >= n
                out.append(emit(Frame(opcode if start == 0 else Opcode.CONT, chunk, last)))
        if opcode is not Opcode.CONT:
            if fin:
                self._out_message = 0
            else:
                self._out_message = opcode
                self._out_raw = not compress  # read by send_continuation while it is open
        elif fin:
            self._out_message = 0
        self._update_plain_send()
        return out

    def _emit(self, frame: Frame) -> bytes:
        encoders = self._encoders
        if encoders is not None:
            for i, encode in enumerate(encoders):
                try:
                    frame = encode(frame)
                except Exception as exc:
                    raise self._internal_error(self._extensions[i], "encode", exc)  # noqa: B904 - the chain is set
        data = serialize_frame(frame, self._mask)
        hook = self._on_sent
        if hook is not None:
            self._observe(hook, "wskit_frame_sent", frame)
        return data

    def _emit_uncompressed(self, frame: Frame) -> bytes:
        # _emit for a message sent with compress=False: compressing extensions
        # are skipped, so their state (e.g. a deflate context) does not move.
        for ext in self._uncompressed or ():
            try:
                frame = ext.encode(frame)
            except Exception as exc:
                raise self._internal_error(ext, "encode", exc)  # noqa: B904 - the chain is set
        data = serialize_frame(frame, self._mask)
        hook = self._on_sent
        if hook is not None:
            self._observe(hook, "wskit_frame_sent", frame)
        return data

    def _observe(self, hook: Any, name: str, frame: Frame) -> None:
        try:
            hook(protocol=self, frame=frame)
        except (ProtocolError, PluginError) as exc:  # the plugin manager names the plugin in what else it raises
            raise self._internal_error(None, name, exc)  # noqa: B904 - the chain is set

    def _internal_error(self, ext: Extension | None, where: str, exc: Exception) -> ProtocolError:
        """Fail the connection because an extension or plugin raised.

        A :class:`ProtocolError` keeps its close code; anything else is a bug in
        the extension or plugin: it is logged (error level, with the plugin's
        name, the hook and the traceback), the peer gets close code 1011 with
        the generic reason ``"internal error"`` (the exception's text stays on
        this side), and the error returned names the plugin. Callers ``raise``
        the result (it is already recorded as the failure).
        """
        reason: str | None = None
        if isinstance(exc, ProtocolError):
            failure = exc
        else:
            error = self._culprit(ext, where, exc)
            if error is not exc:
                error.__cause__ = exc
            failure = ProtocolError(f"internal error: {error}", close_code=CloseCode.INTERNAL_ERROR)
            failure.__cause__ = error
            reason = INTERNAL_ERROR_REASON
            self.logger.error("%s; failing the connection with 1011", error,
                              exc_info=(type(exc), exc, exc.__traceback__))
        self._fail(failure, [], raise_=False, reason=reason)
        return failure

    def _culprit(self, ext: Extension | None, where: str, exc: Exception) -> PluginError:
        """Build the error that names the extension or plugin that raised ``exc``."""
        if ext is not None:
            culprit = f"extension {getattr(ext, 'name', type(ext).__name__)!r} ({type(ext).__qualname__}.{where})"
            owner = self._plugins.extension_owner(ext)
            if owner is not None:
                culprit = f"plugin {owner!r}: {culprit}"
            error = PluginError(f"{culprit} raised {type(exc).__name__}: {exc}")
        else:
            # From an observer hook (_observe): the plugin manager's error already
            # names the plugin and the hook.
            error = cast(PluginError, exc)
        return error

    # -- receiving ----------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes read from the transport; return the events they complete.

        Any chunking of the byte stream is accepted, one byte at a time
        included.

        Returns:
            The completed events, in order.

        Raises:
            ProtocolError: the peer violated the protocol. The connection is
                now failing: write the replies to ``exc.events`` (if any),
                then ``exc.to_send``, then close the transport.
        """
        reader = self._reader
        need = reader.need
        if need < 0:
            # A piece of the large frame being gathered: put straight into
            # its buffer by the reader's cursor, in one call, unless it
            # completes the frame (or is not plain bytes): then read() takes
            # it. Checked first: the commonest call while large messages
            # arrive. (After the connection stops receiving, a piece gives
            # no event either way.)
            cursor = reader._cursor
            if cursor is not None and cursor.put(data):
                return []
        if type(data) is memoryview and not data.c_contiguous:
            data = data.tobytes()  # a view with gaps: its bytes, in order
        if not self._si.receive:
            if self._si.handshake:
                return self._receive_handshake(data)
            return []
        if need > 0:
            # The frame being received is still incomplete: just buffer.
            if data:
                buf = reader.buf
                buf += data
                if len(buf) < need:
                    return []
                data = b""
        fast = self._fast
        if fast is not None:
            # The common case: whole unfragmented messages, parsed in C
            # (read_simple); the commonest, straight from the caller's bytes
            # (or view of bytes, as a large read is), without buffering them.
            if ((type(data) is bytes or byte_view(data))
                    and not reader.buf and not reader.in_message and not reader._remaining):
                max_size = reader.max_size
                events, pos = fast(data, 0, reader.mask_expected, -1 if max_size is None else max_size,
                                   TextMessage, BinaryMessage)
                if events and reader._kept is not None:
                    reader.release_kept()  # messages that were not gathered
                if pos == len(data):
                    reader.need = 0
                    return events
                # The rest (a frame the C parser leaves to the general one), parsed in place too.
                return self._read_frames(memoryview(data)[pos:] if pos else data, events)
            events, rest = reader.read_simple(data, fast, TextMessage, BinaryMessage)
            if rest is None:
                return events
            return self._read_frames(rest, events)
        return self._read_frames(data, [])

    def _receive_handshake(self, data: bytes | bytearray | memoryview) -> list[Event]:
        raise InvalidState("a bare Protocol has no opening handshake: use ClientProtocol or ServerProtocol")

    def _read_frames(self, data: bytes | bytearray | memoryview, events: list[Event]) -> list[Event]:
        """The general path: every frame :meth:`FrameReader.read` completes, after ``events``."""
        frames, error = self._reader.read(data)
        return self._deliver(frames, error, events)

    def receive_buffer(self) -> memoryview | None:
        """Return a buffer to read the next received bytes into, or ``None``.

        While a large frame (64 KiB or more) arrives in pieces, its payload
        is gathered in one buffer: up to 1 MiB, one the connection keeps;
        above that (up to :data:`wskit.frames.GATHER_MAX`, with the C
        accelerator), the ``bytes`` object that becomes the message. A
        transport that can read into a buffer of its choosing
        (``socket.recv_into``, :class:`asyncio.BufferedProtocol`) may read
        straight into the part of it still due, then call
        :meth:`receive_into`: the bytes are not copied from a read buffer
        first. The view is exactly as long as the frame still needs, so a
        read into it never takes the next frame's bytes, and it is valid
        until that :meth:`receive_into` call only (which releases it when
        the frame is gathered in its message's own bytes). ``None`` (the
        usual case): read into your own buffer and call
        :meth:`receive_data`.
        """
        if self._si.receive and self._reader._gather is not None:
            return self._reader.gather_view()
        return None

    def receive_into(self, nbytes: int) -> list[Event]:
        """Account for ``nbytes`` read into the buffer :meth:`receive_buffer` returned.

        Returns:
            The completed events, in order (as :meth:`receive_data`).

        Raises:
            ProtocolError: as :meth:`receive_data` (the completed frame
                broke a rule checked once it is whole, such as UTF-8 in a
                text message when an extension needs whole frames).
            ValueError: no such buffer was offered, or ``nbytes`` is longer
                than it.
        """
        if not self._si.receive:
            return []  # the connection stopped receiving meanwhile (as receive_data does)
        return self._deliver(self._reader.gathered(nbytes), None, [])

    def _deliver(self, frames: list[Frame], error: ProtocolError | None, events: list[Event]) -> list[Event]:
        """Turn frames into events (after ``events``); fail on ``error`` or a rule they break."""
        if error is not None and self._decoders is not None:
            error = self._user_limit(error)
        if frames:
            try:
                self._process(frames, events)
            except ProtocolError as exc:
                error = exc
            else:
                if self._si.close_received:
                    error = None  # RFC 6455 §5.5.1: nothing after the Close counts
        if error is not None:
            if error is self._failure:  # already failed (an extension or plugin raised)
                error.events = events
                raise error
            self._fail(error, events)
        return events

    def _process(self, frames: list[Frame], events: list[Event]) -> None:
        append = events.append
        on_rx = self._on_rx
        decoders = self._decoders
        for frame in frames:
            if on_rx is not None:
                self._observe(on_rx, "wskit_frame_received", frame)
            if decoders is not None:
                frame = self._decode(frame)
            opcode = frame.opcode
            if opcode == 1:
                if frame.fin:
                    try:
                        append(TextMessage(frame.data.decode("utf-8")))
                    except UnicodeDecodeError as exc:
                        raise _invalid_utf8(exc) from None
                else:
                    self._msg_text = True
                    decoder = self._msg_decoder = _new_utf8_decoder()
                    try:
                        self._msg_parts = [decoder.decode(frame.data)]
                    except UnicodeDecodeError as exc:
                        raise _invalid_utf8(exc) from None
            elif opcode == 2:
                if frame.fin:
                    append(BinaryMessage(frame.data))
                else:
                    self._msg_text = False
                    self._msg_parts = [frame.data]
            elif opcode == 0:
                # Empty pieces are not kept: a message's memory grows with its
                # payload only, not with its number of frames.
                if self._msg_text:
                    # RFC 6455 §8.1: fail as soon as the text is not valid UTF-8.
                    try:
                        text = self._msg_decoder.decode(frame.data, frame.fin)
                    except UnicodeDecodeError as exc:
                        raise _invalid_utf8(exc) from None
                    if text:
                        self._msg_parts.append(text)
                    if frame.fin:
                        append(TextMessage("".join(self._msg_parts)))
                        self._msg_parts = _NO_PARTS
                        self._msg_decoder = None
                else:
                    if frame.data:
                        self._msg_parts.append(frame.data)
                    if frame.fin:
                        append(BinaryMessage(b"".join(self._msg_parts)))
                        self._msg_parts = _NO_PARTS
            elif opcode == 9:
                append(Ping(frame.data))
            elif opcode == 10:
                append(Pong(frame.data))
            else:  # CLOSE (the reader rejects every other opcode)
                code, reason = parse_close(frame.data)
                self._close_code = code
                self._close_reason = reason
                self._fire(Trigger.RECEIVE_CLOSE)
                append(Close(code, reason))
                # RFC 6455 §5.5.1: nothing follows a Close frame.
                self._reader.take_buffer()
                return

    def _decode(self, frame: Frame) -> Frame:
        max_size = self._max_size
        opcode = frame.opcode
        if opcode < 8:
            budget = None if max_size is None else max_size - (self._msg_size if opcode == 0 else 0)
        else:
            budget = None
        for i, decode in enumerate(self._decoders or ()):
            try:
                frame = decode(frame, max_size=budget)
            except PayloadTooBig as exc:
                # The extension names the budget it was given: report the user's limit.
                raise PayloadTooBig(f"message exceeds max_size={max_size} once decoded: {exc}",
                                    close_code=CloseCode.MESSAGE_TOO_BIG) from exc
            except ProtocolError:
                raise
            except Exception as exc:
                ext = self._extensions[len(self._extensions) - 1 - i]
                raise self._internal_error(ext, "decode", exc)  # noqa: B904 - the chain is set
        if opcode < 8:
            size = (self._msg_size if opcode == 0 else 0) + len(frame.data)
            if max_size is not None and size > max_size:
                raise PayloadTooBig(f"message of at least {size} bytes (decoded) exceeds max_size={max_size}",
                                    close_code=CloseCode.MESSAGE_TOO_BIG)
            self._msg_size = 0 if frame.fin else size
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            raise ProtocolError("a frame still has RSV bits set after every extension decoded it",
                                close_code=CloseCode.PROTOCOL_ERROR)
        return frame

    def _user_limit(self, error: ProtocolError) -> ProtocolError:
        """Return the reader's ``error`` as the user sees it.

        With extensions, the reader checks the wire size against a limit with
        slack (see :meth:`_set_extensions`): when that limit is passed, the
        message exceeds the user's ``max_size`` too, and the 1009 names it.
        (The limit on frames per message is derived from the user's
        ``max_size`` already: that error stays as it is.)
        """
        reader = self._reader
        limit = reader.max_frames
        if type(error) is PayloadTooBig and (limit is None or reader.in_message < limit):
            too_big = PayloadTooBig(f"message exceeds max_size={self._max_size}: its frames are larger than that "
                                    "before decoding", close_code=CloseCode.MESSAGE_TOO_BIG)
            too_big.__cause__ = error
            return too_big
        return error

    def _fail(self, exc: ProtocolError, events: list[Event], *, raise_: bool = True,
              reason: str | None = None) -> None:
        """Fail the connection (RFC 6455 §7.1.7) and raise ``exc``.

        The Close frame carries ``reason``, by default the exception's text.
        """
        exc.events = events
        code = exc.close_code or CloseCode.PROTOCOL_ERROR
        exc.close_code = code
        si = self._si
        if Trigger.FAIL in si.triggers:
            self._failure = exc
            if reason is None:
                reason = _truncate_utf8(str(exc))
            if si.close_sent:
                exc.to_send = []  # our Close is already out: no second one
            else:
                exc.to_send = [self._close_frame(code, reason)]
            self._close_code = code
            self._close_reason = reason
            self._fire(Trigger.FAIL)
        if self._debug:
            self.logger.debug("! failing the connection with %d: %s", code, exc)
        if raise_:
            raise exc

    def _close_frame(self, code: int, reason: str) -> bytes:
        payload = serialize_close(code, reason)
        encoders = self._encoders
        frame = Frame(Opcode.CLOSE, payload)
        if encoders is not None:
            for encode in encoders:
                try:
                    frame = encode(frame)
                except Exception:  # already failing: send a plain close
                    frame = Frame(Opcode.CLOSE, payload)
                    break
        data = serialize_frame(frame, self._mask)
        hook = self._on_sent
        if hook is not None:
            try:
                hook(protocol=self, frame=frame)
            except Exception:  # already failing: an observer must not mask the error
                pass
        return data

    def receive_eof(self) -> list[Event]:
        """Tell the protocol the transport was closed by the peer (or lost).

        Returns:
            ``[ConnectionClosed(exception)]`` the first time, ``[]`` after:
            ``exception`` is ``None`` after a complete close handshake, the
            protocol failure if there was one, otherwise a
            :class:`~wskit.exceptions.ConnectionClosedError` with code 1006.
        """
        si = self._si
        if si.terminal:  # the transport already closed: reported once
            return []
        exception: BaseException | None = self._failure if si.failed else None
        if self._close_code is None:
            # RFC 6455 §7.1.5: no Close frame received: the close code is 1006.
            self._close_code = CloseCode.ABNORMAL_CLOSURE
            self._close_reason = ""
        if exception is None and not si.clean:
            exception = ConnectionClosedError(self._close_code, self._close_reason,
                                              "connection closed without a complete closing handshake")
        self._fire(Trigger.EOF)
        return [ConnectionClosed(exception)]


def _decoder_of(ext: Extension) -> Any:
    """Return ``ext.decode``, adapted to take ``max_size=`` if it does not.

    An extension's ``decode`` may take the frame alone (``decode(frame)``);
    the protocol still checks the decoded size itself.
    """
    decode = ext.decode
    if _takes_max_size(getattr(decode, "__func__", decode)):
        return decode

    def decode_without_limit(frame: Frame, *, max_size: int | None = None) -> Frame:
        return decode(frame)  # type: ignore[no-any-return]

    return decode_without_limit


@functools.lru_cache(maxsize=256)
def _takes_max_size(function: Any) -> bool:
    try:
        params = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a callable without a readable signature (built in C)
        return True
    return any(p.name == "max_size" or p.kind is p.VAR_KEYWORD for p in params)


def _invalid_utf8(exc: UnicodeDecodeError) -> ProtocolError:
    # RFC 6455 §8.1: invalid UTF-8 in a text message fails the connection (1007).
    return ProtocolError(f"invalid UTF-8 in a text message: {exc.reason} (byte 0x{exc.object[exc.start]:02x})",
                         close_code=CloseCode.INVALID_DATA)


_managers: collections.OrderedDict[tuple[int, ...], tuple[PluginManager, tuple[object, ...]]] = (
    collections.OrderedDict())
_MAX_MANAGERS = 32


def _manager_for(plugins: Sequence[object]) -> PluginManager:
    """Return a plugin manager for the default set plus ``plugins``, built once per list.

    Managers are cached by the plugin objects' identities (the 32 most
    recently used lists): pass the same objects, or a ``plugin_manager=``,
    rather than new plugin objects per connection (a manager costs ~5 ms).
    """
    key = tuple(id(p) for p in plugins)
    hit = _managers.get(key)
    if hit is None:
        hit = (PluginManager(plugins), tuple(plugins))  # keep the plugins alive with their ids
        _managers[key] = hit
        if len(_managers) > _MAX_MANAGERS:
            _managers.popitem(last=False)
    else:
        _managers.move_to_end(key)
    return hit[0]

