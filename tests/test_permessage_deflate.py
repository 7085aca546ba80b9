"""Tests for wskit.extensions.permessage_deflate (RFC 7692)."""

from __future__ import annotations

import itertools
import os
import random
import tracemalloc
import zlib
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wskit.exceptions import ConfigError, NegotiationError, PayloadTooBig, ProtocolError
from wskit.extensions.base import Extension
from wskit.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from wskit.frames import Frame, Opcode

TAIL = b"\x00\x00\xff\xff"
JSON = (
    b'{"type":"update","seq":17,"items":[{"id":123456,"symbol":"ALPHA12","price":101.25,"volume":4242,'
    b'"tags":["beta","gamma","delta"]},{"id":654321,"symbol":"BETA7","price":99.5,"volume":17,'
    b'"tags":["status","ok","value"]}]}'
) * 8  # ~2 KB


# -- helpers -------------------------------------------------------------------


def negotiate(
    client: ClientPerMessageDeflateFactory, server: ServerPerMessageDeflateFactory
) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    response, server_ext = server.process_request_params(client.get_request_params(), [])
    client_ext = client.process_response_params(response, [])
    return client_ext, server_ext


def fragment(opcode: int, payload: bytes, cuts: Sequence[int]) -> list[Frame]:
    """Split payload at the given offsets into a TEXT/BINARY frame and CONT frames."""
    bounds = [0, *sorted(cuts), len(payload)]
    frames = []
    for i in range(len(bounds) - 1):
        chunk = payload[bounds[i] : bounds[i + 1]]
        frames.append(Frame(opcode if i == 0 else Opcode.CONT, chunk, i == len(bounds) - 2))
    return frames


def transfer(
    tx: PerMessageDeflate, rx: PerMessageDeflate, payload: bytes, cuts: Sequence[int] = (), max_size: int | None = None
) -> tuple[bytes, list[Frame]]:
    """Send one message from tx to rx; return the reassembled payload and the wire frames."""
    wire = [tx.encode(f) for f in fragment(Opcode.BINARY, payload, cuts)]
    out = b""
    for f in wire:
        budget = None if max_size is None else max_size - len(out)
        d = rx.decode(f, max_size=budget)
        assert not d.rsv1
        out += d.data
    return out, wire


def compress_message(payload: bytes, wbits: int = 15, finish: bool = False) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    if finish:
        return c.compress(payload) + c.flush(zlib.Z_FINISH)
    data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    return data[:-4]


class FakeRsv1Extension(Extension):
    name = "x-rsv1"
    rsv_mask = 0x40


# -- configuration -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"server_max_window_bits": 7},
        {"server_max_window_bits": 16},
        {"server_max_window_bits": True},
        {"server_max_window_bits": "12"},
        {"client_max_window_bits": 16},
        {"client_max_window_bits": 7},
        {"client_max_window_bits": 12.0},
        {"level": 10},
        {"level": -2},
        {"mem_level": 0},
        {"mem_level": 10},
        {"min_size": -1},
        {"min_size": 1.5},
        {"compress_settings": {"wbits": 12}},
        {"compress_settings": {"strategy": 1}},
        {"compress_settings": {"level": 1}, "level": 2},
        {"compress_settings": {"memLevel": 10}},
    ],
)
@pytest.mark.parametrize("factory", [ClientPerMessageDeflateFactory, ServerPerMessageDeflateFactory])
def test_invalid_settings_raise_config_error(factory: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="permessage-deflate"):
        factory(**kwargs)


def test_server_client_max_window_bits_true_is_invalid() -> None:
    with pytest.raises(ConfigError, match="client_max_window_bits"):
        ServerPerMessageDeflateFactory(client_max_window_bits=True)


@pytest.mark.parametrize("kwargs", [{"local_max_window_bits": 7}, {"remote_max_window_bits": 16}, {"level": 11}])
def test_extension_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        PerMessageDeflate(**kwargs)


def test_compress_settings_and_keywords_apply() -> None:
    factory = ClientPerMessageDeflateFactory(compress_settings={"level": 1, "memLevel": 3}, min_size=7)
    ext = factory.process_response_params([], [])
    assert (ext.level, ext.mem_level, ext.min_size) == (1, 3, 7)
    server = ServerPerMessageDeflateFactory(level=9, mem_level=9, compress_settings={"level": 9})
    _, ext = server.process_request_params([], [])
    assert (ext.level, ext.mem_level) == (9, 9)


def test_extension_identity() -> None:
    ext = PerMessageDeflate()
    assert ext.name == "permessage-deflate"
    assert ext.rsv_mask == 0x40
    assert "local_max_window_bits=15" in repr(ext)
    assert ClientPerMessageDeflateFactory.name == ServerPerMessageDeflateFactory.name == "permessage-deflate"
    assert "client_max_window_bits" in repr(ClientPerMessageDeflateFactory())
    assert "server_max_window_bits=12" in repr(ServerPerMessageDeflateFactory())


# -- negotiation: the client's offer -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "params"),
    [
        ({}, [("client_max_window_bits", None)]),
        ({"client_max_window_bits": None}, []),
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "10")]),
        ({"client_max_window_bits": 8}, [("client_max_window_bits", "8")]),
        ({"server_no_context_takeover": True, "client_max_window_bits": None}, [("server_no_context_takeover", None)]),
        ({"client_no_context_takeover": True, "client_max_window_bits": None}, [("client_no_context_takeover", None)]),
        ({"server_max_window_bits": 9, "client_max_window_bits": None}, [("server_max_window_bits", "9")]),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 15,
                "client_max_window_bits": 15,
            },
            [
                ("server_no_context_takeover", None),
                ("client_no_context_takeover", None),
                ("server_max_window_bits", "15"),
                ("client_max_window_bits", "15"),
            ],
        ),
    ],
)
def test_client_offer(kwargs: dict[str, Any], params: list[tuple[str, str | None]]) -> None:
    assert ClientPerMessageDeflateFactory(**kwargs).get_request_params() == params


def test_offers_helper_builds_offers_in_order() -> None:
    factories = ClientPerMessageDeflateFactory.offers(
        {"server_max_window_bits": 10}, {}, client_max_window_bits=None, level=1
    )
    assert [f.get_request_params() for f in factories] == [[("server_max_window_bits", "10")], []]
    assert all(f.level == 1 for f in factories)


def test_several_offers_server_picks_first_acceptable_and_client_matches_it() -> None:
    # RFC 7692 §7.1.3: prefer a small server window, fall back to a plain offer.
    offers = ClientPerMessageDeflateFactory.offers({"server_max_window_bits": 10}, {})

    class PickyServer(ServerPerMessageDeflateFactory):
        def process_request_params(self, params: Any, accepted: Any) -> Any:
            if any(name == "server_max_window_bits" for name, _ in params):
                raise NegotiationError("no window requests here")
            return super().process_request_params(params, accepted)

    server = PickyServer(server_max_window_bits=None)
    # What a protocol does: try each offered item in order, keep the first accepted.
    for offer in offers:
        try:
            response, server_ext = server.process_request_params(offer.get_request_params(), [])
            break
        except NegotiationError:
            continue
    assert response == [("client_max_window_bits", "12")]
    # Client side: the first factory rejects the answer (no server_max_window_bits), the second accepts.
    with pytest.raises(NegotiationError, match="server_max_window_bits=10 was requested but is missing"):
        offers[0].process_response_params(response, [])
    client_ext = offers[1].process_response_params(response, [])
    assert transfer(client_ext, server_ext, JSON)[0] == JSON
    assert transfer(server_ext, client_ext, JSON)[0] == JSON


# -- negotiation: the server's answer ------------------------------------------


@pytest.mark.parametrize(
    ("server_kwargs", "offer", "response", "expected"),
    [
        # expected: (local_nct, remote_nct, local_bits, remote_bits) of the server's extension
        ({}, [], [("server_max_window_bits", "12")], (False, False, 12, 15)),
        ({"server_max_window_bits": None}, [], [], (False, False, 15, 15)),
        (
            {},
            [("server_no_context_takeover", None)],
            [("server_no_context_takeover", None), ("server_max_window_bits", "12")],
            (True, False, 12, 15),
        ),
        (
            {"server_no_context_takeover": True, "server_max_window_bits": None},
            [],
            [("server_no_context_takeover", None)],
            (True, False, 15, 15),
        ),
        (
            {"server_max_window_bits": None},
            [("client_no_context_takeover", None)],
            [("client_no_context_takeover", None)],
            (False, True, 15, 15),
        ),
        (
            {"client_no_context_takeover": True, "server_max_window_bits": None},
            [],
            [("client_no_context_takeover", None)],
            (False, True, 15, 15),
        ),
        ({}, [("server_max_window_bits", "10")], [("server_max_window_bits", "10")], (False, False, 10, 15)),
        ({}, [("server_max_window_bits", "14")], [("server_max_window_bits", "12")], (False, False, 12, 15)),
        (
            {"server_max_window_bits": None},
            [("server_max_window_bits", "14")],
            [("server_max_window_bits", "14")],
            (False, False, 14, 15),
        ),
        ({}, [("server_max_window_bits", "8")], [("server_max_window_bits", "8")], (False, False, 8, 15)),
        (
            {"server_max_window_bits": None},
            [("client_max_window_bits", None)],
            [("client_max_window_bits", "12")],
            (False, False, 15, 12),
        ),
        (
            {"server_max_window_bits": None},
            [("client_max_window_bits", "10")],
            [("client_max_window_bits", "10")],
            (False, False, 15, 10),
        ),
        (
            {"server_max_window_bits": None},
            [("client_max_window_bits", "14")],
            [("client_max_window_bits", "12")],
            (False, False, 15, 12),
        ),
        (
            {"server_max_window_bits": None, "client_max_window_bits": None},
            [("client_max_window_bits", None)],
            [],
            (False, False, 15, 15),
        ),
        (
            {"server_max_window_bits": None, "client_max_window_bits": None},
            [("client_max_window_bits", "11")],
            [("client_max_window_bits", "11")],
            (False, False, 15, 11),
        ),
        (
            {"server_max_window_bits": None, "client_max_window_bits": 8},
            [("client_max_window_bits", None)],
            [("client_max_window_bits", "8")],
            (False, False, 15, 8),
        ),
    ],
)
def test_server_accepts(
    server_kwargs: dict[str, Any],
    offer: list[tuple[str, str | None]],
    response: list[tuple[str, str | None]],
    expected: tuple[bool, bool, int, int],
) -> None:
    got, ext = ServerPerMessageDeflateFactory(**server_kwargs).process_request_params(offer, [])
    assert got == response
    assert (
        ext.local_no_context_takeover,
        ext.remote_no_context_takeover,
        ext.local_max_window_bits,
        ext.remote_max_window_bits,
    ) == expected


def test_server_never_answers_client_max_window_bits_unoffered() -> None:
    # RFC 7692 §7.1.2.2: the client did not offer it, so the server may not send it.
    response, ext = ServerPerMessageDeflateFactory(client_max_window_bits=9).process_request_params([], [])
    assert all(name != "client_max_window_bits" for name, _ in response)
    assert ext.remote_max_window_bits == 15


@pytest.mark.parametrize(
    ("offer", "message"),
    [
        ([("foo", None)], "unknown parameter 'foo'"),
        ([("Server_No_Context_Takeover", None)], "unknown parameter"),
        ([("server_no_context_takeover", None), ("server_no_context_takeover", None)], "more than once"),
        ([("client_max_window_bits", None), ("client_max_window_bits", "10")], "more than once"),
        ([("server_max_window_bits", "10"), ("server_max_window_bits", "10")], "more than once"),
        ([("server_no_context_takeover", "1")], "takes no value"),
        ([("client_no_context_takeover", "")], "takes no value"),
        ([("server_max_window_bits", None)], "needs a value"),
        ([("server_max_window_bits", "7")], "not an integer in 8..15"),
        ([("server_max_window_bits", "16")], "not an integer in 8..15"),
        ([("server_max_window_bits", "08")], "not an integer in 8..15"),
        ([("server_max_window_bits", " 9")], "not an integer in 8..15"),
        ([("server_max_window_bits", "nine")], "not an integer in 8..15"),
        ([("client_max_window_bits", "0")], "not an integer in 8..15"),
        ([("client_max_window_bits", "")], "not an integer in 8..15"),
        ([("client_max_window_bits", "+9")], "not an integer in 8..15"),
    ],
)
def test_server_declines_invalid_offer(offer: list[tuple[str, str | None]], message: str) -> None:
    with pytest.raises(NegotiationError, match=message):
        ServerPerMessageDeflateFactory().process_request_params(offer, [])


def test_server_declines_when_rsv1_is_taken() -> None:
    with pytest.raises(NegotiationError, match="RSV1 is already used by the negotiated extension 'x-rsv1'"):
        ServerPerMessageDeflateFactory().process_request_params([], [FakeRsv1Extension()])
    # An extension that does not use RSV1 does not conflict.
    ServerPerMessageDeflateFactory().process_request_params([], [Extension()])


# -- negotiation: the client checks the answer ---------------------------------


@pytest.mark.parametrize(
    ("client_kwargs", "response", "expected"),
    [
        # expected: (local_nct, remote_nct, local_bits, remote_bits) of the client's extension
        ({}, [], (False, False, 15, 15)),
        ({"client_max_window_bits": None}, [], (False, False, 15, 15)),
        ({"client_max_window_bits": 11}, [], (False, False, 11, 15)),
        ({}, [("client_max_window_bits", "10")], (False, False, 10, 15)),
        ({}, [("client_max_window_bits", "8")], (False, False, 8, 15)),
        ({"client_max_window_bits": 11}, [("client_max_window_bits", "11")], (False, False, 11, 15)),
        ({"client_max_window_bits": 11}, [("client_max_window_bits", "9")], (False, False, 9, 15)),
        ({}, [("server_no_context_takeover", None)], (False, True, 15, 15)),  # allowed unrequested (§7.1.1.1)
        ({"server_no_context_takeover": True}, [("server_no_context_takeover", None)], (False, True, 15, 15)),
        ({}, [("client_no_context_takeover", None)], (True, False, 15, 15)),
        ({"client_no_context_takeover": True}, [], (True, False, 15, 15)),  # our promise (§7.1.1.2)
        ({}, [("server_max_window_bits", "9")], (False, False, 15, 9)),  # allowed unrequested (§7.1.2.1)
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "10")], (False, False, 15, 10)),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "8")], (False, False, 15, 8)),
    ],
)
def test_client_accepts(
    client_kwargs: dict[str, Any], response: list[tuple[str, str | None]], expected: tuple[bool, bool, int, int]
) -> None:
    ext = ClientPerMessageDeflateFactory(**client_kwargs).process_response_params(response, [])
    assert (
        ext.local_no_context_takeover,
        ext.remote_no_context_takeover,
        ext.local_max_window_bits,
        ext.remote_max_window_bits,
    ) == expected


@pytest.mark.parametrize(
    ("client_kwargs", "response", "message"),
    [
        ({}, [("foo", "1")], "unknown parameter 'foo'"),
        ({}, [("server_no_context_takeover", None), ("server_no_context_takeover", None)], "more than once"),
        ({}, [("server_max_window_bits", "9"), ("server_max_window_bits", "9")], "more than once"),
        ({}, [("server_no_context_takeover", "yes")], "takes no value"),
        ({}, [("client_no_context_takeover", "yes")], "takes no value"),
        ({}, [("server_max_window_bits", None)], "needs a value"),
        ({}, [("client_max_window_bits", None)], "needs a value"),
        ({}, [("server_max_window_bits", "16")], "not an integer in 8..15"),
        ({}, [("client_max_window_bits", "7")], "not an integer in 8..15"),
        ({}, [("client_max_window_bits", "010")], "not an integer in 8..15"),
        ({"server_max_window_bits": 10}, [("server_max_window_bits", "11")], "larger than the requested 10"),
        ({"server_max_window_bits": 10}, [], "server_max_window_bits=10 was requested but is missing"),
        ({"server_no_context_takeover": True}, [], "server_no_context_takeover was requested but is missing"),
        ({"client_max_window_bits": None}, [("client_max_window_bits", "10")], "was not offered"),
        ({"client_max_window_bits": 10}, [("client_max_window_bits", "11")], "larger than the offered 10"),
    ],
)
def test_client_rejects_invalid_answer(
    client_kwargs: dict[str, Any], response: list[tuple[str, str | None]], message: str
) -> None:
    with pytest.raises(NegotiationError, match=message):
        ClientPerMessageDeflateFactory(**client_kwargs).process_response_params(response, [])


def test_client_rejects_when_rsv1_is_taken() -> None:
    with pytest.raises(NegotiationError, match="RSV1"):
        ClientPerMessageDeflateFactory().process_response_params([], [FakeRsv1Extension()])


def test_negotiation_error_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ClientPerMessageDeflateFactory().process_response_params([("x", None)], [])


def test_every_valid_offer_round_trips_through_both_factories() -> None:
    # Every combination of client settings against several servers: the server's answer is
    # always acceptable to the client that made the offer, and data flows both ways.
    client_options = itertools.product([False, True], [False, True], [None, 8, 10, 15], [None, True, 8, 10, 15])
    servers = [
        ServerPerMessageDeflateFactory(),
        ServerPerMessageDeflateFactory(server_max_window_bits=None, client_max_window_bits=None),
        ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True, server_max_window_bits=9,
            client_max_window_bits=8,
        ),
    ]
    for snct, cnct, sbits, cbits in client_options:
        client = ClientPerMessageDeflateFactory(
            server_no_context_takeover=snct,
            client_no_context_takeover=cnct,
            server_max_window_bits=sbits,
            client_max_window_bits=cbits,
        )
        for server in servers:
            client_ext, server_ext = negotiate(client, server)
            assert client_ext.local_max_window_bits == server_ext.remote_max_window_bits
            assert client_ext.remote_max_window_bits == server_ext.local_max_window_bits
            assert client_ext.remote_no_context_takeover == server_ext.local_no_context_takeover
            assert server_ext.remote_no_context_takeover <= client_ext.local_no_context_takeover
            if sbits is not None:
                assert server_ext.local_max_window_bits <= sbits
            for _ in range(2):
                assert transfer(client_ext, server_ext, JSON)[0] == JSON
                assert transfer(server_ext, client_ext, JSON)[0] == JSON


# -- data: round trips -----------------------------------------------------------


def test_context_takeover_over_many_messages() -> None:
    client_ext, server_ext = negotiate(ClientPerMessageDeflateFactory(), ServerPerMessageDeflateFactory())
    sizes = []
    rnd = random.Random(1)
    for i in range(200):
        payload = JSON[: rnd.randrange(len(JSON))] + str(i).encode()
        tx, rx = (client_ext, server_ext) if i % 2 else (server_ext, client_ext)
        got, wire = transfer(tx, rx, payload)
        assert got == payload
        assert wire[0].rsv1 == (len(payload) >= 32)
    for _ in range(3):
        sizes.append(len(transfer(client_ext, server_ext, JSON)[1][0].data))
    # The window remembers the previous message: a repeat costs a few bytes.
    assert sizes[1] < 20 < sizes[0] or sizes[0] < 20


def test_fragmented_messages_round_trip() -> None:
    client_ext, server_ext = negotiate(ClientPerMessageDeflateFactory(), ServerPerMessageDeflateFactory())
    rnd = random.Random(2)
    for _ in range(100):
        payload = os.urandom(rnd.randrange(0, 300)) + JSON[: rnd.randrange(len(JSON))]
        cuts = [rnd.randrange(len(payload) + 1) for _ in range(rnd.randrange(1, 6))]
        got, wire = transfer(client_ext, server_ext, payload, cuts)
        assert got == payload
        assert wire[0].rsv1 and not any(f.rsv1 for f in wire[1:])
        assert [f.opcode for f in wire[1:]] == [Opcode.CONT] * (len(wire) - 1)


def test_each_fragment_decodes_on_arrival() -> None:
    # Every non-final frame is sync-flushed, so its content is available at once.
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    frames = fragment(Opcode.TEXT, JSON, [500, 1000])
    first = rx.decode(tx.encode(frames[0]))
    assert first.data == JSON[:500] and first.opcode == Opcode.TEXT and not first.fin


def test_interleaved_control_frames_pass_through() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    frames = fragment(Opcode.TEXT, JSON, [700])
    ping = Frame(Opcode.PING, b"are you there")
    wire = [tx.encode(frames[0]), tx.encode(ping), tx.encode(frames[1])]
    assert wire[1] is ping
    decoded = [rx.decode(f) for f in wire]
    assert decoded[1] is wire[1]
    assert decoded[0].data + decoded[2].data == JSON


@pytest.mark.parametrize("local_nct", [False, True])
@pytest.mark.parametrize("remote_nct", [False, True])
def test_no_context_takeover(local_nct: bool, remote_nct: bool) -> None:
    client = ClientPerMessageDeflateFactory(client_no_context_takeover=local_nct, server_no_context_takeover=remote_nct)
    client_ext, server_ext = negotiate(client, ServerPerMessageDeflateFactory())
    assert client_ext.local_no_context_takeover is local_nct is server_ext.remote_no_context_takeover
    assert client_ext.remote_no_context_takeover is remote_nct is server_ext.local_no_context_takeover
    for tx, rx, nct in ((client_ext, server_ext, local_nct), (server_ext, client_ext, remote_nct)):
        sizes = [len(transfer(tx, rx, JSON)[1][0].data) for _ in range(3)]
        if nct:
            assert sizes[0] == sizes[1] == sizes[2]  # every message starts from an empty window
            assert tx._compressor is None and rx._decompressor is None  # memory released
        else:
            assert sizes[1] < sizes[0] // 4
            assert tx._compressor is not None and rx._decompressor is not None


def test_no_context_takeover_fresh_stream_per_message_is_decoded() -> None:
    rx = PerMessageDeflate(remote_no_context_takeover=True)
    for payload in (JSON, JSON, b"x" * 100):
        assert rx.decode(Frame(Opcode.TEXT, compress_message(payload), rsv1=True)).data == payload


def test_context_takeover_receiver_keeps_window() -> None:
    rx = PerMessageDeflate()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    for _ in range(3):
        data = (c.compress(JSON) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
        assert rx.decode(Frame(Opcode.BINARY, data, rsv1=True)).data == JSON


@pytest.mark.parametrize("bits", range(8, 16))
def test_window_bits_round_trip_and_limit(bits: int) -> None:
    client = ClientPerMessageDeflateFactory(server_max_window_bits=bits, client_max_window_bits=bits)
    server = ServerPerMessageDeflateFactory(server_max_window_bits=None, client_max_window_bits=None)
    client_ext, server_ext = negotiate(client, server)
    assert client_ext.local_max_window_bits == client_ext.remote_max_window_bits == bits
    # Repeats within the window (zlib reaches back window - 262 bytes), and beyond it.
    rnd = random.Random(bits)
    block = bytes(rnd.randrange(256) for _ in range(max(64, (1 << bits) - 300)))
    payload = block * 4 + os.urandom(1 << bits) + block
    for tx, rx in ((client_ext, server_ext), (server_ext, client_ext)):
        got, wire = transfer(tx, rx, payload)
        assert got == payload
        # A decoder with exactly the negotiated window accepts what we sent.
        assert zlib.decompressobj(-bits).decompress(wire[0].data + TAIL) == payload
        if bits > 8:
            assert len(wire[0].data) < len(payload) - 2 * len(block)  # the repeats were found


def test_window_bits_8_compresses_with_rle_strategy() -> None:
    ext = PerMessageDeflate(local_max_window_bits=8)
    payload = b"a" * 1000 + JSON
    data = ext.encode(Frame(Opcode.TEXT, payload)).data
    assert len(data) < len(payload)
    assert zlib.decompressobj(-8).decompress(data + TAIL) == payload


def test_receiving_window_8_stream_made_by_zlib_with_9() -> None:
    # A peer that negotiated 8 but whose zlib used 9 (zlib < 1.2.9 did so silently).
    rx = PerMessageDeflate(remote_max_window_bits=8)
    block = os.urandom(300)
    payload = block + block
    data = compress_message(payload, wbits=9)
    assert rx.decode(Frame(Opcode.BINARY, data, rsv1=True)).data == payload


def test_min_size() -> None:
    tx, rx = PerMessageDeflate(min_size=10), PerMessageDeflate()
    small = Frame(Opcode.TEXT, b"123456789")
    assert tx.encode(small) is small  # unchanged, RSV1 clear
    assert rx.decode(small) is small
    big = tx.encode(Frame(Opcode.TEXT, b"1234567890"))
    assert big.rsv1
    assert rx.decode(big).data == b"1234567890"
    # A fragmented message is compressed whatever the size of its first frame.
    frames = [tx.encode(f) for f in fragment(Opcode.TEXT, b"12345", [1])]
    assert frames[0].rsv1
    assert b"".join(rx.decode(f).data for f in frames) == b"12345"
    # An uncompressed message stays uncompressed across its CONT frames.
    assert tx.encode(Frame(Opcode.CONT, b"zz")) == Frame(Opcode.CONT, b"zz")


def test_uncompressed_messages_from_peer_pass_through() -> None:
    rx = PerMessageDeflate()
    for frame in fragment(Opcode.BINARY, b"plain data", [3, 6]):
        assert rx.decode(frame) is frame


def test_empty_message() -> None:
    tx, rx = PerMessageDeflate(min_size=0), PerMessageDeflate()
    frame = tx.encode(Frame(Opcode.TEXT, b""))
    assert frame.rsv1 and frame.data == b"\x00"  # RFC 7692 §7.2.3.6
    assert rx.decode(frame).data == b""
    # An empty compressed frame is also accepted (as an empty message).
    assert rx.decode(Frame(Opcode.TEXT, b"", rsv1=True)).data == b""


def test_level_zero_still_strips_tail() -> None:
    tx, rx = PerMessageDeflate(level=0), PerMessageDeflate()
    assert transfer(tx, rx, JSON, [100])[0] == JSON


def test_rsv2_rsv3_preserved() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    wire = tx.encode(Frame(Opcode.TEXT, JSON, rsv2=True, rsv3=True))
    assert (wire.rsv1, wire.rsv2, wire.rsv3) == (True, True, True)
    back = rx.decode(wire)
    assert (back.rsv1, back.rsv2, back.rsv3) == (False, True, True)


def test_memoryview_and_bytearray_payloads() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    wire = tx.encode(Frame(Opcode.BINARY, memoryview(JSON)))  # type: ignore[arg-type]
    assert rx.decode(wire._replace(data=memoryview(wire.data))).data == JSON  # type: ignore[arg-type]
    wire = tx.encode(Frame(Opcode.BINARY, bytearray(JSON)))  # type: ignore[arg-type]
    assert rx.decode(wire._replace(data=bytearray(wire.data)), max_size=len(JSON)).data == JSON  # type: ignore[arg-type]


def test_large_message_two_call_path() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    payload = os.urandom(50_000) + JSON * 20
    assert transfer(tx, rx, payload)[0] == payload
    assert transfer(tx, rx, payload, max_size=len(payload))[0] == payload
    with pytest.raises(PayloadTooBig):
        transfer(tx, rx, payload, max_size=len(payload) - 1)


# -- data: violations ------------------------------------------------------------


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_rsv1_on_control_frame_is_1002(opcode: Opcode) -> None:
    with pytest.raises(ProtocolError, match="RSV1 set on a control frame") as info:
        PerMessageDeflate().decode(Frame(opcode, b"", rsv1=True))
    assert info.value.close_code == 1002


def test_rsv1_on_continuation_frame_is_1002() -> None:
    rx = PerMessageDeflate()
    for first_rsv1 in (True, False):
        rx = PerMessageDeflate()
        first = Frame(Opcode.TEXT, compress_message(b"abc") if first_rsv1 else b"abc", fin=False, rsv1=first_rsv1)
        rx.decode(first)
        with pytest.raises(ProtocolError, match="continuation frame") as info:
            rx.decode(Frame(Opcode.CONT, b"", rsv1=True))
        assert info.value.close_code == 1002


def test_new_message_inside_compressed_fragmented_message_is_1002() -> None:
    rx = PerMessageDeflate()
    rx.decode(Frame(Opcode.TEXT, compress_message(b"abc"), fin=False, rsv1=True))
    with pytest.raises(ProtocolError, match="expected a continuation frame") as info:
        rx.decode(Frame(Opcode.TEXT, b"x"))
    assert info.value.close_code == 1002


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xff\xff\xff",  # invalid block type
        b"\x04",  # BTYPE=10 with a broken dynamic header
        b"\x00\x05\x00\x00\x00hello",  # stored block whose LEN and NLEN disagree
    ],
)
def test_corrupt_data_is_1007(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="invalid permessage-deflate data") as info:
        PerMessageDeflate().decode(Frame(Opcode.BINARY, data, rsv1=True), max_size=1 << 20)
    assert info.value.close_code == 1007


def test_corrupt_data_in_continuation_is_1007() -> None:
    rx = PerMessageDeflate()
    rx.decode(Frame(Opcode.BINARY, b"", fin=False, rsv1=True))
    with pytest.raises(ProtocolError) as info:
        rx.decode(Frame(Opcode.CONT, b"\xff\xff\xff", fin=False))
    assert info.value.close_code == 1007


def test_distance_beyond_negotiated_window_is_1007() -> None:
    # The peer promised a 512-byte window but refers 1000 bytes back into the previous message.
    rx = PerMessageDeflate(remote_max_window_bits=9)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    block = os.urandom(1000)
    first = (c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    assert rx.decode(Frame(Opcode.BINARY, first, rsv1=True)).data == block
    second = (c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(ProtocolError, match="invalid permessage-deflate data") as info:
        rx.decode(Frame(Opcode.BINARY, second, rsv1=True))
    assert info.value.close_code == 1007


def test_bfinal_message_accepted_then_fresh_stream() -> None:
    # RFC 7692 §7.2.3.4: a message may end with a BFINAL block.
    rx = PerMessageDeflate()
    assert rx.decode(Frame(Opcode.TEXT, compress_message(JSON, finish=True), rsv1=True)).data == JSON
    assert rx.decode(Frame(Opcode.TEXT, compress_message(b"next " * 20), rsv1=True)).data == b"next " * 20


def test_data_after_bfinal_is_1007() -> None:
    rx = PerMessageDeflate()
    data = compress_message(JSON, finish=True) + b"garbage"
    with pytest.raises(ProtocolError, match="after the end of the deflate stream") as info:
        rx.decode(Frame(Opcode.TEXT, data, rsv1=True))
    assert info.value.close_code == 1007
    rx = PerMessageDeflate()
    rx.decode(Frame(Opcode.TEXT, compress_message(JSON, finish=True), fin=False, rsv1=True))
    with pytest.raises(ProtocolError, match="after the end") as info:
        rx.decode(Frame(Opcode.CONT, b"more", fin=True))
    assert info.value.close_code == 1007


@pytest.mark.parametrize("max_size", [0, 1, 100, len(JSON) - 1])
def test_payload_too_big(max_size: int) -> None:
    tx, rx = PerMessageDeflate(min_size=0), PerMessageDeflate()
    with pytest.raises(PayloadTooBig, match="max_size") as info:
        rx.decode(tx.encode(Frame(Opcode.TEXT, JSON)), max_size=max_size)
    assert info.value.close_code == 1009


def test_payload_exactly_max_size_is_accepted() -> None:
    tx, rx = PerMessageDeflate(min_size=0), PerMessageDeflate()
    assert rx.decode(tx.encode(Frame(Opcode.TEXT, JSON)), max_size=len(JSON)).data == JSON
    assert rx.decode(tx.encode(Frame(Opcode.TEXT, b"")), max_size=0).data == b""


def test_budget_applies_per_frame_of_a_fragmented_message() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    payload = JSON
    wire = [tx.encode(f) for f in fragment(Opcode.BINARY, payload, [1000])]
    assert rx.decode(wire[0], max_size=len(payload)).data == payload[:1000]
    with pytest.raises(PayloadTooBig):
        rx.decode(wire[1], max_size=len(payload) - 1000 - 1)


def test_zip_bomb_is_stopped_with_bounded_memory() -> None:
    # 16 MiB of zeros compress to ~16 KiB; the limit is 1 MiB.
    bomb = compress_message(bytes(16 << 20))
    assert len(bomb) < 20_000
    max_size = 1 << 20
    rx = PerMessageDeflate()
    tracemalloc.start()
    try:
        with pytest.raises(PayloadTooBig) as info:
            rx.decode(Frame(Opcode.BINARY, bomb, rsv1=True), max_size=max_size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.close_code == 1009
    # At most max_size + 1 bytes were inflated. CPython's zlib builds the output in blocks
    # and joins them, so the peak is about twice that, plus zlib's state: bounded by the
    # limit, not by the 16 MiB the bomb expands to.
    assert peak < 2 * max_size + 200_000


def test_zip_bomb_in_continuation_frames() -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    rx = PerMessageDeflate()
    max_size = 1_500_000
    out = rx.decode(Frame(Opcode.BINARY, first, fin=False, rsv1=True), max_size=max_size)
    assert len(out.data) == 1 << 20
    second = (c.compress(bytes(1 << 20)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]
    with pytest.raises(PayloadTooBig):
        rx.decode(Frame(Opcode.CONT, second, fin=True), max_size=max_size - (1 << 20))


def test_decode_without_max_size_keyword() -> None:
    tx, rx = PerMessageDeflate(), PerMessageDeflate()
    payload = bytes(3 << 20)
    assert rx.decode(tx.encode(Frame(Opcode.BINARY, payload))).data == payload


# -- interop with python-websockets ----------------------------------------------

ws_pmd = pytest.importorskip("websockets.extensions.permessage_deflate")
ws_frames = pytest.importorskip("websockets.frames")


def to_ws(frame: Frame) -> Any:
    opcode = ws_frames.Opcode(frame.opcode)
    return ws_frames.Frame(opcode, bytes(frame.data), frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)


def from_ws(frame: Any) -> Frame:
    return Frame(int(frame.opcode), bytes(frame.data), frame.fin, frame.rsv1, frame.rsv2, frame.rsv3)


INTEROP_BITS = [8, 9, 12, 15]


@pytest.mark.parametrize(
    ("local_nct", "remote_nct", "local_bits", "remote_bits"),
    # python-websockets cannot compress with an 8-bit window, so our remote side starts at 9.
    list(itertools.product([False, True], [False, True], INTEROP_BITS, INTEROP_BITS[1:])),
)
def test_interop_websockets_extension(local_nct: bool, remote_nct: bool, local_bits: int, remote_bits: int) -> None:
    ours = PerMessageDeflate(
        local_no_context_takeover=local_nct,
        remote_no_context_takeover=remote_nct,
        local_max_window_bits=local_bits,
        remote_max_window_bits=remote_bits,
        min_size=0,
    )
    # Their "remote" is our "local" and vice versa.
    theirs = ws_pmd.PerMessageDeflate(local_nct, remote_nct, local_bits, remote_bits)
    rnd = random.Random(local_bits * 100 + remote_bits)
    for i in range(6):
        payload = JSON[: rnd.randrange(len(JSON))] + os.urandom(rnd.randrange(50))
        cuts = [rnd.randrange(len(payload) + 1) for _ in range(i % 3)]
        # ours -> theirs
        out = b""
        for f in fragment(Opcode.TEXT, payload, cuts):
            out += theirs.decode(to_ws(ours.encode(f)), max_size=1 << 20).data
        assert out == payload
        # theirs -> ours
        out = b""
        for f in fragment(Opcode.BINARY, payload, cuts):
            d = ours.decode(from_ws(theirs.encode(to_ws(f))), max_size=1 << 20)
            assert not d.rsv1
            out += d.data
        assert out == payload


@pytest.mark.parametrize(
    "client_kwargs",
    [
        {},
        {"server_no_context_takeover": True},
        {"client_no_context_takeover": True},
        {"server_max_window_bits": 10},
        {"client_max_window_bits": 11},
        {"client_max_window_bits": None},
        {"server_no_context_takeover": True, "client_no_context_takeover": True, "server_max_window_bits": 9},
    ],
)
@pytest.mark.parametrize(
    "server_kwargs",
    [
        {},
        {"server_max_window_bits": None, "client_max_window_bits": None},
        {"server_no_context_takeover": True, "client_no_context_takeover": True},
        {"server_max_window_bits": 9, "client_max_window_bits": 9},
    ],
)
def test_interop_websockets_negotiation(client_kwargs: dict[str, Any], server_kwargs: dict[str, Any]) -> None:
    # Our client against their server.
    client = ClientPerMessageDeflateFactory(**client_kwargs)
    their_server = ws_pmd.ServerPerMessageDeflateFactory(**server_kwargs)
    response, their_ext = their_server.process_request_params(client.get_request_params(), [])
    our_ext = client.process_response_params(response, [])
    for _ in range(3):
        assert their_ext.decode(to_ws(our_ext.encode(Frame(Opcode.TEXT, JSON)))).data == JSON
        assert our_ext.decode(from_ws(their_ext.encode(to_ws(Frame(Opcode.TEXT, JSON))))).data == JSON
    # Their client against our server.
    their_kwargs = dict(client_kwargs)
    their_kwargs.setdefault("client_max_window_bits", True)
    their_client = ws_pmd.ClientPerMessageDeflateFactory(**their_kwargs)
    server = ServerPerMessageDeflateFactory(**server_kwargs)
    response, our_ext = server.process_request_params(their_client.get_request_params(), [])
    their_ext = their_client.process_response_params(response, [])
    for _ in range(3):
        assert their_ext.decode(to_ws(our_ext.encode(Frame(Opcode.TEXT, JSON)))).data == JSON
        assert our_ext.decode(from_ws(their_ext.encode(to_ws(Frame(Opcode.TEXT, JSON))))).data == JSON


# -- interop with wsproto ------------------------------------------------------------

wsproto_ext = pytest.importorskip("wsproto.extensions")
wsproto_fp = pytest.importorskip("wsproto.frame_protocol")


class _Side:
    def __init__(self, client: bool) -> None:
        self.client = client


def wsproto_send(ext: Any, side: _Side, frames: list[Frame]) -> list[Frame]:
    out = []
    for f in frames:
        rsv = wsproto_fp.RsvBits(False, False, False)
        rsv, data = ext.frame_outbound(side, wsproto_fp.Opcode(f.opcode), rsv, f.data, f.fin)
        out.append(Frame(f.opcode, bytes(data), f.fin, rsv.rsv1))
    return out


def wsproto_receive(ext: Any, side: _Side, frames: list[Frame]) -> bytes:
    out = b""
    for f in frames:
        rsv = wsproto_fp.RsvBits(f.rsv1, False, False)
        res = ext.frame_inbound_header(side, wsproto_fp.Opcode(f.opcode), rsv, len(f.data))
        assert not isinstance(res, wsproto_fp.CloseReason)
        out += ext.frame_inbound_payload_data(side, f.data)
        tail = ext.frame_inbound_complete(side, f.fin)
        assert not isinstance(tail, wsproto_fp.CloseReason)
        if tail:
            out += tail
    return out


@pytest.mark.parametrize("nct", [False, True])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_interop_wsproto(nct: bool, bits: int) -> None:
    # wsproto client <-> our server, negotiated through the wire format of the header parameters.
    theirs = wsproto_ext.PerMessageDeflate(
        client_no_context_takeover=nct, server_no_context_takeover=nct, client_max_window_bits=bits,
        server_max_window_bits=bits,
    )
    offer = theirs.offer()
    params = []
    for item in offer.split(";"):
        name, _, value = item.strip().partition("=")
        params.append((name, value or None))
    response, ours = ServerPerMessageDeflateFactory().process_request_params(params, [])
    theirs.finalize("permessage-deflate; " + "; ".join(n if v is None else f"{n}={v}" for n, v in response))
    side = _Side(client=True)
    rnd = random.Random(bits)
    for i in range(5):
        payload = JSON[: rnd.randrange(len(JSON))] + bytes([i]) * 40
        cuts = [rnd.randrange(len(payload) + 1) for _ in range(i % 3)]
        frames = fragment(Opcode.BINARY, payload, cuts)
        wire = wsproto_send(theirs, side, frames)
        assert b"".join(ours.decode(f, max_size=1 << 20).data for f in wire) == payload
        wire = [ours.encode(f) for f in frames]
        assert wsproto_receive(theirs, side, wire) == payload


# -- property-based ----------------------------------------------------------------

settings_st = st.fixed_dictionaries(
    {
        "local_no_context_takeover": st.booleans(),
        "local_max_window_bits": st.integers(8, 15),
        "level": st.integers(-1, 9),
        "mem_level": st.integers(1, 9),
        "min_size": st.integers(0, 64),
    }
)
message_st = st.tuples(
    st.one_of(st.binary(max_size=3000), st.text(max_size=1000).map(lambda s: s.encode())),
    st.lists(st.integers(0, 3000), max_size=5),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(settings_st, st.lists(message_st, min_size=1, max_size=8), st.booleans())
def test_random_messages_and_fragmentations_round_trip(
    tx_settings: dict[str, Any], messages: list[tuple[bytes, list[int]]], limit: bool
) -> None:
    tx = PerMessageDeflate(**tx_settings)
    rx = PerMessageDeflate(
        remote_no_context_takeover=tx_settings["local_no_context_takeover"],
        remote_max_window_bits=tx_settings["local_max_window_bits"],
    )
    for payload, cuts in messages:
        cuts = [c % (len(payload) + 1) for c in cuts]
        got, wire = transfer(tx, rx, payload, cuts, max_size=len(payload) if limit else None)
        assert got == payload
        assert len(wire) == len(cuts) + 1
        assert wire[0].rsv1 == (len(cuts) > 0 or len(payload) >= tx_settings["min_size"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2000))
def test_random_garbage_never_crashes(data: bytes, max_size: int) -> None:
    rx = PerMessageDeflate()
    try:
        out = rx.decode(Frame(Opcode.BINARY, data, rsv1=True), max_size=max_size)
    except PayloadTooBig as exc:
        assert exc.close_code == 1009
    except ProtocolError as exc:
        assert exc.close_code == 1007
    else:
        assert len(out.data) <= max_size


@pytest.mark.parametrize("size", [10, 10_000])
@pytest.mark.parametrize("max_size", [None, 1 << 20])
def test_appended_tail_is_inflated_like_peer_data(size: int, max_size: int | None) -> None:
    # RFC 7692 §7.2.2: the receiver appends 00 00 ff ff and inflates it with the payload.
    # A peer whose payload ends with the header of a 4-byte stored block makes those 4
    # octets content: the output must contain them, whatever path the decoder takes.
    payload = os.urandom(size)
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    data = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH) + b"\x00\x04\x00\xfb\xff"
    out = PerMessageDeflate().decode(Frame(Opcode.BINARY, data, rsv1=True), max_size=max_size)
    assert out.data == payload + TAIL
    if max_size is not None:
        with pytest.raises(PayloadTooBig):
            PerMessageDeflate().decode(Frame(Opcode.BINARY, data, rsv1=True), max_size=size + 3)
