"""A copy of the state-machine spec with every state renamed behaves exactly like the original.

No state name is written in the code: everything the protocol does comes
from the facts and permissions the spec declares. These tests drive the
shipped spec and a consistently renamed copy side by side with the same
input and compare everything a user can observe: events, bytes written,
exceptions (class, message, close code, ``to_send``), close codes and every
closing-handshake property, through the sans-I/O API (random action
sequences from every starting state, and the opening handshake) and through
the asyncio and threaded I/O layers (``spec=`` on ``connect`` and ``serve``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wskit.asyncio
import wskit.sync
from wskit import ClientProtocol, ConnectionClosed, Protocol, ServerProtocol, Side, State
from wskit.events import Event, Request, Response
from wskit.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidHandshake, ProtocolError, WSKitError
from wskit.extensions.base import Extension
from wskit.frames import Frame, Opcode
from wskit.statemachine import StateSpec, default_spec, load_spec, spec_path

from helpers import MASK_KEY, build_frame, close_payload, parse_frames

# -- the renamed copy ---------------------------------------------------------------------------


def renamed_data() -> tuple[dict[str, Any], dict[str, str]]:
    """Return the shipped spec with every state renamed, and the renaming."""
    data = yaml.safe_load(Path(str(spec_path())).read_text(encoding="utf-8"))
    names = {name: f"s{i}_{name[::-1]}x" for i, name in enumerate(data["states"])}

    def rename(value: Any) -> Any:
        if isinstance(value, list):
            return [names[v] for v in value]
        return names.get(value, value)  # "*" stays

    data["initial"] = names[data["initial"]]
    data["states"] = {names[n]: props for n, props in data["states"].items()}
    for t in data["transitions"]:
        t["source"], t["dest"] = rename(t["source"]), rename(t["dest"])
    return data, names


RENAMED_DATA, RENAMING = renamed_data()
RENAMED = StateSpec(RENAMED_DATA, "<renamed>")
SPECS = {"shipped": default_spec(), "renamed": RENAMED}


@pytest.fixture(scope="module")
def renamed_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "renamed.yaml"
    path.write_text(yaml.safe_dump(RENAMED_DATA, sort_keys=False), encoding="utf-8")
    return path


def test_the_copy_shares_no_state_name_with_the_shipped_spec(renamed_path: Path) -> None:
    assert not set(RENAMED.states) & set(default_spec().states)
    assert len(RENAMING) == len(default_spec().states)
    loaded = load_spec(renamed_path)  # validation accepts it: no state name is required
    assert [info.public for info in loaded.states.values()] == [i.public for i in default_spec().states.values()]


# -- what a user observes ---------------------------------------------------------------------------


def observe(p: Protocol) -> tuple[Any, ...]:
    failure = p.failure
    return (p.state, p.close_code, p.close_reason, p.close_sent, p.close_received,
            None if failure is None else (type(failure).__name__, str(failure)),
            p.may_send_close, p.close_answer_may_wait, p.closed_cleanly, p.closes_transport_first)


def wire(data: list[bytes], side: Side) -> Any:
    """Normalize written bytes: frames (unmasked), or the first line of an HTTP message."""
    joined = b"".join(data)
    if joined.startswith((b"HTTP/", b"GET ")):
        return joined.split(b"\r\n", 1)[0]
    return parse_frames(joined, masked=side is Side.CLIENT)


def event_view(event: Event) -> Any:
    if isinstance(event, ConnectionClosed):
        exc = event.exception
        return ("ConnectionClosed", None if exc is None else (type(exc).__name__, str(exc)))
    if isinstance(event, Request):
        return ("Request", event.path)
    if isinstance(event, Response):
        return ("Response", event.status_code)
    return event


def outcome(p: Protocol, action: Callable[[], Any]) -> Any:
    try:
        result = action()
    except WSKitError as exc:
        return ("raised", type(exc).__name__, str(exc), getattr(exc, "close_code", None),
                wire(getattr(exc, "to_send", []), p.side), [event_view(e) for e in getattr(exc, "events", [])],
                observe(p))
    if result and isinstance(result[0], bytes | bytearray):
        return ("wrote", wire(result, p.side), observe(p))
    return ("events", [event_view(e) for e in result or []], observe(p))


def peer_frame(p: Protocol, opcode: int, payload: bytes = b"", **kwargs: Any) -> bytes:
    # The peer of a server masks its frames; the peer of a client does not.
    return build_frame(opcode, payload, mask=MASK_KEY if p.side is Side.SERVER else None, **kwargs)


ACTIONS: dict[str, Callable[[Protocol], Any]] = {
    "recv_text": lambda p: p.receive_data(peer_frame(p, Opcode.TEXT, b"hello")),
    "recv_fragment": lambda p: p.receive_data(peer_frame(p, Opcode.BINARY, b"part", fin=False)),
    "recv_ping": lambda p: p.receive_data(peer_frame(p, Opcode.PING, b"p")),
    "recv_close": lambda p: p.receive_data(peer_frame(p, Opcode.CLOSE, close_payload(1001, b"away"))),
    "recv_close_empty": lambda p: p.receive_data(peer_frame(p, Opcode.CLOSE)),
    "recv_text_then_close": lambda p: p.receive_data(peer_frame(p, Opcode.TEXT, b"last")
                                                     + peer_frame(p, Opcode.CLOSE, close_payload(1000))),
    "recv_violation": lambda p: p.receive_data(peer_frame(p, Opcode.TEXT, b"ok") + peer_frame(p, 0x3)),
    "recv_bad_utf8": lambda p: p.receive_data(peer_frame(p, Opcode.TEXT, b"\xff")),
    "recv_too_big": lambda p: p.receive_data(peer_frame(p, Opcode.BINARY, b"x" * 300)),
    "send_text": lambda p: p.send_text("hi"),
    "send_binary": lambda p: p.send_binary(b"\x00\x01"),
    "send_ping": lambda p: p.send_ping(b"x"),
    "send_pong": lambda p: p.send_pong(b"y"),
    "send_close": lambda p: p.send_close(1000, "done"),
    "send_close_1005": lambda p: p.send_close(1005, ""),
    "eof": lambda p: p.receive_eof(),
}


def run(spec: StateSpec, side: Side, start: State, actions: list[str]) -> list[Any]:
    p = Protocol(side, spec=spec, state=start, max_size=200)
    trace: list[Any] = [observe(p)]
    for name in actions:
        trace.append((name, outcome(p, lambda: ACTIONS[name](p))))  # noqa: B023 - called at once
    return trace


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(side=st.sampled_from(list(Side)), start=st.sampled_from([State.OPEN, State.CLOSING, State.CLOSED]),
       actions=st.lists(st.sampled_from(sorted(ACTIONS)), max_size=8))
def test_any_action_sequence_behaves_identically(side: Side, start: State, actions: list[str]) -> None:
    assert run(RENAMED, side, start, actions) == run(default_spec(), side, start, actions)


@pytest.mark.parametrize("side", list(Side))
@pytest.mark.parametrize("path", [
    # Reach every state of the shipped spec, then try every action there.
    [], ["send_close"], ["recv_close"], ["recv_violation"], ["send_close", "recv_violation"],
    ["recv_close", "send_close"], ["send_close", "recv_close"], ["recv_close", "send_text", "send_close"],
    ["eof"], ["send_close", "eof"], ["recv_close", "eof"], ["recv_violation", "eof"],
    ["send_close", "recv_close", "eof"],
])
def test_every_action_in_every_state(side: Side, path: list[str]) -> None:
    for name in ACTIONS:
        for extra in ([name], [name, "eof"], [name, "eof", "eof"]):
            assert run(RENAMED, side, State.OPEN, path + extra) == run(default_spec(), side, State.OPEN, path + extra)


def test_the_table_reaches_every_state() -> None:
    seen = set()
    for start in (State.OPEN, State.CLOSING, State.CLOSED):
        for path in ([], ["send_close"], ["recv_close"], ["recv_violation"], ["send_close", "recv_violation"],
                     ["recv_close", "send_close"], ["send_close", "recv_close"]):
            for tail in ([], ["eof"]):
                p = Protocol(Side.SERVER, state=start)
                for name in path + tail:
                    outcome(p, lambda: ACTIONS[name](p))  # noqa: B023 - called at once
                seen.add(p._sm_state)
    for p in handshake_ends():
        seen.add(p._sm_state)
    for p in extension_failure_ends(default_spec()):
        seen.add(p._sm_state)
    assert seen == set(default_spec().states)


# -- the opening handshake ----------------------------------------------------------------------------


def handshake(spec: StateSpec, script: str) -> list[Any]:
    client = ClientProtocol("ws://127.0.0.1/chat", spec=spec)
    server = ServerProtocol(spec=spec)
    trace: list[Any] = [observe(client), observe(server)]
    request = b"".join(client.connect())
    if script == "server_eof_mid_request":
        trace.append(outcome(server, lambda: server.receive_data(request[:20])))
        trace.append(outcome(server, server.receive_eof))
        trace.append(outcome(server, server.receive_eof))
        return trace
    if script == "bad_request":
        trace.append(outcome(server, lambda: server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
        trace.append(outcome(server, server.receive_eof))
        return trace
    trace.append(outcome(server, lambda: server.receive_data(request)))
    if script == "reject":
        trace.append(outcome(server, lambda: server.reject(403, "Forbidden")))
        trace.append(outcome(server, lambda: server.send_text("x")))
        trace.append(outcome(server, server.receive_eof))
        forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
        trace.append(outcome(client, lambda: client.receive_data(forbidden)))
        trace.append(outcome(client, client.receive_eof))
        return trace
    if script == "client_eof_mid_response":
        trace.append(outcome(client, lambda: client.receive_data(b"HTTP/1.1 101 Switching")))
        trace.append(outcome(client, client.receive_eof))
        trace.append(outcome(client, client.receive_eof))
        return trace
    assert server.request is not None
    response = b"".join(server.accept(server.request))
    trace.append(observe(server))
    trace.append(outcome(client, lambda: client.receive_data(response)))
    if script == "client_closes":
        trace.append(outcome(server, lambda: server.receive_data(b"".join(client.send_close(1000, "bye")))))
        trace.append(outcome(client, lambda: client.receive_data(b"".join(server.send_close(1000, "bye")))))
    elif script == "server_closes":
        trace.append(outcome(client, lambda: client.receive_data(b"".join(server.send_close(1001)))))
        trace.append(outcome(server, lambda: server.receive_data(b"".join(client.send_close(1001)))))
    elif script == "client_fails":
        trace.append(outcome(client, lambda: client.receive_data(b"\x83\x00")))
    trace.append(outcome(server, server.receive_eof))
    trace.append(outcome(client, client.receive_eof))
    return trace


SCRIPTS = ["client_closes", "server_closes", "client_fails", "reject", "bad_request", "server_eof_mid_request",
           "client_eof_mid_response", "eof_when_open"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_opening_handshake_behaves_identically(script: str) -> None:
    assert handshake(RENAMED, script) == handshake(default_spec(), script)


def handshake_ends() -> Iterator[Protocol]:
    client = ClientProtocol("ws://127.0.0.1/")
    yield client
    client.connect()
    with pytest.raises(InvalidHandshake):
        client.receive_data(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    yield client
    client.receive_eof()
    yield client


# -- an extension failing after the peer's Close --------------------------------------------------


class FailsOnData(Extension):
    """Raises when encoding a data frame: the connection fails while we may still send."""

    name = "x-fails-on-data"

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode < 8:
            raise RuntimeError("cannot encode")
        return frame


def extension_failure_ends(spec: StateSpec) -> Iterator[Protocol]:
    p = Protocol(Side.SERVER, spec=spec, extensions=[FailsOnData()])
    p.receive_data(build_frame(Opcode.CLOSE, close_payload(1000), mask=MASK_KEY))
    with pytest.raises(ProtocolError):
        p.send_text("late")
    yield p
    p.receive_eof()
    yield p


def test_extension_failure_after_the_peers_close_behaves_identically() -> None:
    def trace(spec: StateSpec) -> list[Any]:
        p = Protocol(Side.SERVER, spec=spec, extensions=[FailsOnData()])
        out = [outcome(p, lambda: p.receive_data(build_frame(Opcode.CLOSE, close_payload(1000), mask=MASK_KEY)))]
        out.append(outcome(p, lambda: p.send_text("late")))
        out += [outcome(p, lambda n=name: ACTIONS[n](p)) for name in ("send_close", "send_pong", "eof", "eof")]
        return out

    shipped = trace(default_spec())
    assert trace(RENAMED) == shipped
    assert shipped[1][0] == "raised" and shipped[1][3] == 1011  # internal error: our Close says 1011
    assert shipped[-2][2][8] is False  # not clean


# -- through the I/O layers -------------------------------------------------------------------------

USED: list[str] = []  # the initial state of the spec each connection ran, to check spec= reached the core


async def asyncio_session(spec: Any, who_closes: str) -> tuple[Any, ...]:
    seen: dict[str, Any] = {}
    handler_done = asyncio.Event()

    async def handler(ws: Any) -> None:
        try:
            async for message in ws:
                await ws.send(message)
                if message == "server closes":
                    await ws.close(4001, "server done")
        except WSKitError as exc:
            seen["server_error"] = type(exc).__name__
        finally:
            await ws.wait_closed()
            seen["server"] = (ws.close_code, ws.close_reason, ws.protocol.closed_cleanly, ws.protocol.state)
            USED.append(ws.protocol._spec.initial)
            handler_done.set()

    async with wskit.asyncio.serve(handler, "127.0.0.1", 0, spec=spec) as server:
        port = server.sockets[0].getsockname()[1]
        async with wskit.asyncio.connect(f"ws://127.0.0.1:{port}/", spec=spec) as ws:
            await ws.send("hello")
            echoed = await ws.recv()
            if who_closes == "client":
                await ws.close(1000, "client done")
            else:
                await ws.send("server closes")
                await ws.recv()
            with pytest.raises((ConnectionClosedOK, ConnectionClosedError)) as info:
                await ws.recv()
            await ws.wait_closed()
            client = (echoed, ws.close_code, ws.close_reason, type(info.value).__name__,
                      ws.protocol.closed_cleanly, ws.protocol.state)
            USED.append(ws.protocol._spec.initial)
        await asyncio.wait_for(handler_done.wait(), 10)
    return client, seen.get("server_error"), seen["server"]


@pytest.mark.parametrize("who_closes", ["client", "server"])
def test_asyncio_layer_behaves_identically(renamed_path: Path, who_closes: str) -> None:
    USED.clear()
    shipped = asyncio.run(asyncio_session(None, who_closes))
    renamed = asyncio.run(asyncio_session(renamed_path, who_closes))
    assert USED == ["connecting"] * 2 + [RENAMED.initial] * 2
    assert renamed == shipped
    assert shipped[0][4] is True and shipped[2][2] is True  # both ends closed cleanly


def sync_session(spec: Any, who_closes: str) -> tuple[Any, ...]:
    seen: dict[str, Any] = {}
    done = threading.Event()

    def handler(ws: Any) -> None:
        try:
            for message in ws:
                ws.send(message)
                if message == "server closes":
                    ws.close(4001, "server done")
        except WSKitError as exc:
            seen["server_error"] = type(exc).__name__
        finally:
            seen["server"] = (ws.close_code, ws.close_reason, ws.protocol.closed_cleanly, ws.protocol.state)
            USED.append(ws.protocol._spec.initial)
            done.set()

    with wskit.sync.serve(handler, "127.0.0.1", 0, spec=spec) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.socket.getsockname()[1]
            with wskit.sync.connect(f"ws://127.0.0.1:{port}/", spec=spec) as ws:
                ws.send("hello")
                echoed = ws.recv()
                if who_closes == "client":
                    ws.close(1000, "client done")
                else:
                    ws.send("server closes")
                    ws.recv()
                with pytest.raises((ConnectionClosedOK, ConnectionClosedError)) as info:
                    ws.recv()
                client = (echoed, ws.close_code, ws.close_reason, type(info.value).__name__,
                          ws.protocol.closed_cleanly, ws.protocol.state)
                USED.append(ws.protocol._spec.initial)
            assert done.wait(10)
        finally:
            server.shutdown()
            thread.join(10)
    return client, seen.get("server_error"), seen["server"]


@pytest.mark.parametrize("who_closes", ["client", "server"])
def test_sync_layer_behaves_identically(renamed_path: Path, who_closes: str) -> None:
    USED.clear()
    shipped = sync_session(None, who_closes)
    renamed = sync_session(renamed_path, who_closes)
    assert sorted(USED) == sorted(["connecting"] * 2 + [RENAMED.initial] * 2)
    assert renamed == shipped
    assert shipped[0][4] is True and shipped[2][2] is True  # both ends closed cleanly
