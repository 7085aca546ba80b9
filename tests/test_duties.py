"""Tests for wskit.duties.Duties, the connection duties both I/O layers share, driven directly over
sans-I/O protocols: automatic pongs, ping bookkeeping, the held answer to a Close, and failures."""

from __future__ import annotations

import re

import pytest

from wskit import Close, Ping, Protocol, Side, State
from wskit.duties import After, Duties, Release, check_options, fragment_kind, is_fragment_source, send_type_error
from wskit.exceptions import ConcurrencyError, ConnectionClosedError, ConnectionClosedOK, ProtocolError
from wskit.frames import Opcode

from helpers import client_frame, close_payload, parse_close_frame, parse_frames


def test_a_ping_is_answered_until_our_close_is_out() -> None:
    duties = Duties(Protocol(Side.SERVER))
    [pong] = parse_frames(duties.answer_ping(b"hi"), masked=False)
    assert (pong.opcode, pong.data) == (Opcode.PONG, b"hi")
    duties.start_close(1000, "bye")
    assert duties.answer_ping(b"late") == []


def test_pings_without_payload_get_distinct_random_payloads() -> None:
    duties = Duties(Protocol(Side.CLIENT))
    payloads = [parse_frames(duties.send_ping(None, 1.0), masked=True)[0].data for _ in range(50)]
    assert all(len(p) == 4 for p in payloads) and len(set(payloads)) == 50
    # A Pong answering the latest acknowledges every earlier Ping too (RFC 6455 §5.5.3).
    done = duties.pong_received(payloads[-1], 3.0)
    assert len(done) == 50 and duties.latency == 2.0
    assert duties.pong_received(payloads[0], 4.0) == []  # already acknowledged


def test_a_ping_payload_waiting_for_its_pong_is_refused() -> None:
    duties = Duties(Protocol(Side.CLIENT))
    duties.send_ping("once", 0.0, waiter="w")
    with pytest.raises(ConcurrencyError, match="a ping with payload b'once' is already waiting for its pong"):
        duties.send_ping(b"once", 0.5)
    assert duties.pong_received(b"once", 0.25) == [("w", 0.25)]


def peer_closed(protocol: Protocol, code: int = 1001, reason: str = "going away") -> None:
    [event] = protocol.receive_data(client_frame(Opcode.CLOSE, close_payload(code, reason.encode())))
    assert event == Close(code, reason)


def test_the_answer_to_a_close_is_held_while_messages_wait_then_echoes_it() -> None:
    duties = Duties(Protocol(Side.SERVER))
    peer_closed(duties.protocol)
    assert duties.close_received(undelivered=True) is None
    assert duties.holding
    release = duties.release()
    assert release is not None and not duties.holding
    assert parse_close_frame(release.data, masked=False) == (1001, "going away")
    assert release.after is After.CLOSE  # the server closes the TCP connection first
    assert duties.release() is None  # nothing is held any more


def test_closing_while_the_answer_is_held_sends_the_answer() -> None:
    duties = Duties(Protocol(Side.CLIENT))
    [event] = duties.protocol.receive_data(b"\x88\x02" + close_payload(1000))
    assert isinstance(event, Close)
    assert duties.close_received(undelivered=True) is None
    release = duties.start_close(1001, "ignored: the peer's Close is answered")
    assert release is not None and release.after is After.WAIT
    assert parse_close_frame(release.data, masked=True) == (1000, "")
    assert duties.start_close(1000, "") is None  # our Close is out
    assert duties.protocol.state is State.CLOSED


def test_an_empty_close_is_answered_with_an_empty_close() -> None:
    duties = Duties(Protocol(Side.SERVER))
    duties.protocol.receive_data(client_frame(Opcode.CLOSE, b""))
    release = duties.close_received(undelivered=False)
    assert release == Release([b"\x88\x00"], After.CLOSE)
    assert isinstance(duties.closed_exception(), ConnectionClosedOK)


def test_a_held_failure_is_what_the_layers_failure_sends() -> None:
    duties = Duties(Protocol(Side.SERVER))
    with pytest.raises(ProtocolError) as info:
        duties.protocol.receive_data(client_frame(Opcode.TEXT, b"\xff"))
    assert duties.failed(info.value, undelivered=True) is None
    # The layer gives up (e.g. keepalive): the failure's own Close goes out, not a second one.
    data = duties.fail(1011, "keepalive ping timeout")
    assert parse_close_frame(data, masked=False) == (1007, parse_close_frame(info.value.to_send, masked=False)[1])
    assert not duties.holding
    assert duties.close_code == 1011  # the layer's failure names how the connection ended


def test_the_first_layer_failure_wins() -> None:
    duties = Duties(Protocol(Side.SERVER))
    data = duties.fail(1011, "keepalive ping timeout")
    assert parse_close_frame(data, masked=False) == (1011, "keepalive ping timeout")
    assert duties.fail(1002, "another") == []  # our Close is out
    assert (duties.close_code, duties.close_reason) == (1011, "keepalive ping timeout")
    duties.protocol.receive_eof()
    exc = duties.closed_exception()
    assert isinstance(exc, ConnectionClosedError) and exc.code == 1011


def test_ping_event_round_trip_through_the_duties() -> None:
    server = Duties(Protocol(Side.SERVER))
    [ping] = server.protocol.receive_data(client_frame(Opcode.PING, b"rt"))
    assert ping == Ping(b"rt")
    assert parse_frames(server.answer_ping(ping.data), masked=False)[0].data == b"rt"


@pytest.mark.parametrize(("options", "message"), [
    ({"max_queue": 0}, "max_queue must be None or >= 1, got 0"),
    ({"write_limit": -1}, "write_limit must be >= 0, got -1"),
    ({"ping_interval": 0}, "ping_interval must be None or > 0, got 0"),
    ({"ping_timeout": -2.5}, "ping_timeout must be None or > 0, got -2.5"),
    ({"close_timeout": 0.0}, "close_timeout must be None or > 0, got 0.0"),
])
def test_connection_options_are_checked_by_name(options: dict[str, float], message: str) -> None:
    given = {"max_queue": 16, "write_limit": 32768, "ping_interval": 20.0, "ping_timeout": 20.0,
             "close_timeout": 10.0, **options}
    with pytest.raises(ValueError, match=re.escape(message)):
        check_options(**given)  # type: ignore[arg-type]
    check_options(max_queue=None, write_limit=0, ping_interval=None, ping_timeout=None, close_timeout=None)


def test_fragments_of_a_message_sent_from_an_iterable_are_all_of_one_kind() -> None:
    assert fragment_kind("a", 0) is True
    assert fragment_kind(memoryview(b"a"), 1, False) is False
    with pytest.raises(TypeError, match="send\\(\\): fragment 2 is a int; expected str or bytes-like"):
        fragment_kind(5, 2, True)
    with pytest.raises(TypeError, match="fragment 1 is bytes-like but fragment 0 is str: a fragmented message is all"):
        fragment_kind(b"b", 1, True)
    assert is_fragment_source(["a", "b"]) and not is_fragment_source({"a": 1})
    assert str(send_type_error(3.5)) == "send() takes str, bytes-like, or an iterable of them, not float"


def test_a_failure_with_nothing_undelivered_sends_its_close_at_once() -> None:
    duties = Duties(Protocol(Side.CLIENT))
    with pytest.raises(ProtocolError) as info:
        duties.protocol.receive_data(b"\x81\x01\xff")  # invalid UTF-8 from the server
    release = duties.failed(info.value, undelivered=False)
    assert release is not None and release.after is After.WAIT  # the server closes TCP first
    assert parse_close_frame(release.data, masked=True)[0] == 1007
