"""Hypothesis strategies and settings for the fuzz targets in ``fuzz_targets.py``.

Inputs are built three ways, mixed: valid inputs (to reach deep states),
valid inputs mutated byte-wise (inserted, deleted, replaced, duplicated
spans) and inputs assembled from plausible and implausible pieces (tokens,
separators, lengths that lie).

How long each target runs is a hypothesis profile chosen with the
``WSKIT_FUZZ`` environment variable: ``ci`` (default: bounded, a few
seconds for the whole directory) or ``long`` (``make fuzz``: many examples
per target; ``WSKIT_FUZZ_EXAMPLES`` overrides the count).
"""

from __future__ import annotations

import os
import struct
import zlib

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

__all__ = [
    "FUZZ",
    "chunk_sizes",
    "mutated",
    "http_requests",
    "http_responses",
    "frame_streams",
    "deflate_streams",
    "config_texts",
    "raw_frame",
]

settings.register_profile(
    "wskit-fuzz-ci", max_examples=150, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "wskit-fuzz-long", max_examples=int(os.environ.get("WSKIT_FUZZ_EXAMPLES", "20000")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ = settings.get_profile("wskit-fuzz-long" if os.environ.get("WSKIT_FUZZ") == "long" else "wskit-fuzz-ci")
"""The settings every fuzz test runs with (see the module docstring)."""

#: Chunk sizes to feed an input in (empty: in one piece).
chunk_sizes = st.lists(st.integers(1, 70), max_size=6)


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes]) -> bytes:
    """A seed with a few byte-level mutations."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate", "flip"]))
        if kind == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r", b"\n", b"\r\n", b"\x00", b" ", b":", b"\t", b"\xff",
                                                  b",", b";", b"=", b'"', b"\x80", b"9" * 20]))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "replace" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif kind == "duplicate":
            end = pos + draw(st.integers(1, 40))
            data[pos:pos] = data[pos:end] * draw(st.integers(1, 3))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


# -- HTTP/1.1 --------------------------------------------------------------------------------

_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
VALID_REQUEST = (b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8765\r\nUpgrade: websocket\r\n"
                 b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " + _KEY + b"\r\n"
                 b"Sec-WebSocket-Version: 13\r\nOrigin: https://example.com\r\n"
                 b"Sec-WebSocket-Protocol: chat, superchat\r\n"
                 b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
VALID_RESPONSES = [
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: " + _ACCEPT + b"\r\n\r\n\x81\x02hi",
    b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found",
    b"HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nboom\r\n0\r\nT: v\r\n\r\n",
    b"HTTP/1.1 403 Forbidden\r\n\r\nthe body runs until EOF",
    b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
]
_NAMES = [b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
          b"Sec-WebSocket-Accept", b"Sec-WebSocket-Protocol", b"Sec-WebSocket-Extensions", b"Origin",
          b"Content-Length", b"Transfer-Encoding", b"X-Y", b"", b"Bad Name", b"\xff"]
_VALUES = [b"websocket", b"Upgrade", b"13", _KEY, _ACCEPT, b"chunked", b"0", b"-1", b"99999999999999999999",
           b"permessage-deflate; server_max_window_bits=8; client_no_context_takeover", b"chat", b"",
           b"a, b,, c", b"\x00", b"\x7f", b"caf\xc3\xa9", b'"quoted \\" string"', b" padded "]
_SEPS = [b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b" \r\n"]


@st.composite
def _assembled_head(draw: st.DrawFn, start_lines: list[bytes]) -> bytes:
    parts = [draw(st.sampled_from(start_lines)), draw(st.sampled_from(_SEPS))]
    for _ in range(draw(st.integers(0, 8))):
        name = draw(st.sampled_from(_NAMES) | st.binary(max_size=6))
        colon = draw(st.sampled_from([b": ", b":", b" : ", b":\t", b""]))
        value = draw(st.sampled_from(_VALUES) | st.binary(max_size=12))
        parts += [name, colon, value, draw(st.sampled_from(_SEPS))]
    parts.append(draw(st.sampled_from([b"\r\n", b"\r\n", b"", b"\n"])))
    parts.append(draw(st.binary(max_size=16)))
    return b"".join(parts)


_REQUEST_LINES = [b"GET / HTTP/1.1", b"GET /a?b=c HTTP/1.1", b"POST / HTTP/1.1", b"GET / HTTP/1.0",
                  b"GET / HTTP/2.0", b"GET  / HTTP/1.1", b"GET /\x00 HTTP/1.1", b"get / http/1.1", b"GET",
                  b"GET * HTTP/1.1", b"GET http://a/b HTTP/1.1", b"\xff\xfe", b""]
_STATUS_LINES = [b"HTTP/1.1 101 Switching Protocols", b"HTTP/1.1 200 OK", b"HTTP/1.1 404", b"HTTP/1.0 101 x",
                 b"HTTP/1.1 1000 Big", b"HTTP/1.1 99 Small", b"HTTP/1.1 101", b"HTTP/1.1 abc d", b"ICY 200 OK", b""]

http_requests = st.one_of(
    st.just(VALID_REQUEST),
    mutated(st.just(VALID_REQUEST)),
    _assembled_head(_REQUEST_LINES),
    st.binary(max_size=300),
)
http_responses = st.one_of(
    st.sampled_from(VALID_RESPONSES),
    mutated(st.sampled_from(VALID_RESPONSES)),
    _assembled_head(_STATUS_LINES),
    st.binary(max_size=300),
)


# -- frames ------------------------------------------------------------------------------------


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bytes | None = None,
              length: int | None = None, length_bytes: int | None = None) -> bytes:
    """Build a frame with any header, valid or not (``length`` may lie about the payload)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)
    mbit = 0x80 if mask is not None else 0
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    if length_bytes == 0:
        header = bytes([b0, mbit | (n & 0x7F)])
    elif length_bytes == 2:
        header = bytes([b0, mbit | 126]) + struct.pack("!H", n & 0xFFFF)
    else:
        header = bytes([b0, mbit | 127]) + struct.pack("!Q", n & (2**64 - 1))
    if mask is not None:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header += mask
    return header + payload


_PAYLOADS = st.one_of(
    st.binary(max_size=40),
    st.text(max_size=20).map(lambda s: s.encode("utf-8")),
    st.sampled_from([b"\x03\xe8", b"\x03\xe8bye", b"\x03\xed", b"\x0b\xb8", b"\x03", b"\x03\xe8\xff",
                     "é€😀".encode(), "é€😀".encode()[:-1], b"\xed\xa0\x80", b"\xc0\xaf", b"x" * 126]),
)


@st.composite
def _frame(draw: st.DrawFn, masked: bool, rsv_likely: bool = False) -> bytes:
    opcode = draw(st.sampled_from([0, 0, 1, 1, 2, 2, 8, 9, 9, 10, 3, 11]))
    payload = draw(_PAYLOADS)
    fin = draw(st.booleans())
    rsv = draw(st.sampled_from([0, 0, 0, 4 if rsv_likely else 0, 2, 1]))
    mask = draw(st.binary(min_size=4, max_size=4)) if draw(st.integers(0, 15)) else None
    if not masked:
        mask = None if draw(st.integers(0, 15)) else b"\x00\x00\x00\x00"
    length = None
    length_bytes = None
    if not draw(st.integers(0, 11)):
        length = draw(st.sampled_from([0, 125, 126, 65535, 65536, 2**20 + 1, 2**63, 2**64 - 1]))
        length_bytes = draw(st.sampled_from([None, 0, 2, 8]))
    elif not draw(st.integers(0, 11)):
        length_bytes = draw(st.sampled_from([2, 8]))  # a longer length encoding than needed
    return raw_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask, length=length, length_bytes=length_bytes)


@st.composite
def _message(draw: st.DrawFn, masked: bool) -> bytes:
    """A plausible (fragmented) message, maybe with control frames in between."""
    key = b"\x12\x34\x56\x78" if masked else None
    text = draw(st.booleans())
    body = draw(st.text(max_size=30)).encode() if text else draw(st.binary(max_size=30))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)])]
    out = []
    for i, piece in enumerate(pieces):
        out.append(raw_frame((1 if text else 2) if i == 0 else 0, piece, fin=i == len(pieces) - 1, mask=key))
        if draw(st.integers(0, 5)) == 0:
            out.append(raw_frame(9, b"ping", mask=key))
    return b"".join(out)


def frame_streams(masked: bool) -> st.SearchStrategy[bytes]:
    """Byte streams of frames as a peer sends them (masked towards a server)."""
    one = st.one_of(_frame(masked), _message(masked))
    stream = st.lists(one, max_size=6).map(b"".join)
    return st.one_of(stream, mutated(stream), st.binary(max_size=200))


# -- permessage-deflate ---------------------------------------------------------------------------


def _deflated(data: bytes, bits: int = 15, final: bool = False) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    return out if final else out[:-4]


@st.composite
def _compressed_message(draw: st.DrawFn) -> bytes:
    key = b"\x01\x02\x03\x04"
    text = draw(st.booleans())
    body = draw(st.text(max_size=200)).encode() if text else draw(st.binary(max_size=200))
    if draw(st.booleans()):
        body = body * draw(st.integers(1, 300))  # compressible: inflates far beyond its wire size
    wire = _deflated(body, draw(st.sampled_from([9, 12, 15])), final=draw(st.integers(0, 7)) == 0)
    if draw(st.integers(0, 3)) == 0:
        wire = draw(mutated(st.just(wire)))
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=3)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)])]
    out = []
    for i, piece in enumerate(pieces):
        rsv = 4 if i == 0 else draw(st.sampled_from([0, 0, 0, 0, 4]))
        out.append(raw_frame((1 if text else 2) if i == 0 else 0, piece, fin=i == len(pieces) - 1, rsv=rsv,
                             mask=key))
        if draw(st.integers(0, 6)) == 0:
            out.append(raw_frame(9, b"", rsv=draw(st.sampled_from([0, 4])), mask=key))
    return b"".join(out)


deflate_streams = st.one_of(
    st.lists(st.one_of(_compressed_message(), _frame(True, rsv_likely=True)), max_size=5).map(b"".join),
    st.lists(_compressed_message(), min_size=1, max_size=3).map(b"".join).flatmap(lambda s: mutated(st.just(s))),
)


# -- configuration ---------------------------------------------------------------------------------

_TOP = ["max_size", "max_fragment_size", "max_queue", "write_limit", "subprotocols", "origin", "origins",
        "handshake", "compression", "plugins", "timeouts", "server", "client", "tls", "unknown_key", "logging"]
_SUB = ["max_line", "max_headers", "max_header_bytes", "max_body", "enabled", "level", "mem_level", "min_size",
        "server_no_context_takeover", "client_max_window_bits", "enable", "disable", "entry_points", "open",
        "close", "ping_interval", "ping_timeout", "host", "port", "unix", "reuse_port", "uri", "certfile",
        "keyfile", "cafile", "typo"]
_SCALARS = ["1", "0", "-1", "1048576", "1e3", "1.5", "0x10", "null", "~", "true", "false", "yes", "''", '""',
            "[]", "{}", "[a, b]", "[chat, null]", "ws://example.com/", "http://x", "127.0.0.1", "65536",
            "99999999999999999999", ".inf", ".nan", "!!binary aGVsbG8=", "&anchor 1", "*anchor", "|\n  text",
            "'unterminated", "[unclosed", "{a: 1, a: 2}", "@reserved", "%TAG", "\t1", "2001-01-01", "logging",
            "/nonexistent/file.pem", "é"]


@st.composite
def _config(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(_TOP))
        if draw(st.booleans()):
            lines.append(f"{key}: {draw(st.sampled_from(_SCALARS))}")
        else:
            lines.append(f"{key}:")
            indent = draw(st.sampled_from(["  ", "  ", "    ", " ", "\t"]))
            for _ in range(draw(st.integers(0, 4))):
                sub = draw(st.sampled_from(_SUB))
                if draw(st.integers(0, 5)) == 0:
                    lines.append(f"{indent}- {draw(st.sampled_from(_SCALARS))}")
                else:
                    lines.append(f"{indent}{sub}: {draw(st.sampled_from(_SCALARS))}")
    if draw(st.integers(0, 9)) == 0:
        lines.insert(draw(st.integers(0, len(lines))), draw(st.sampled_from(["---", "...", "# comment", "",
                                                                              "- item", "? key", ": value"])))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n"]))


_EXAMPLE = """max_size: 1048576
max_queue: 16
handshake:
  max_line: 8192
compression:
  enabled: true
  server_max_window_bits: 12
subprotocols: [chat, superchat]
origins: [https://example.com, null]
timeouts:
  open: 10
  ping_interval: null
server:
  host: 127.0.0.1
  port: 8765
"""

config_texts = st.one_of(
    _config(),
    mutated(st.just(_EXAMPLE.encode())).map(lambda b: b.decode("utf-8", "replace")),
    st.text(max_size=120),
)
