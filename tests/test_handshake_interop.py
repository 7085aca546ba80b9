"""Opening-handshake interoperability, in memory, against python-websockets and wsproto.

Every pairing of a client and a server among wskit, python-websockets and
wsproto (with wskit on at least one side) runs the opening handshake through
byte buffers only: subprotocol negotiation, extra headers both ways,
rejection with a body, permessage-deflate with a compressed message each way,
and frames that arrive in the same chunk as the request or the 101 response.
The last part tampers with real 101 answers to check that the wskit client
refuses them (RFC 6455 §4.1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import pytest
import websockets.client as ws_client
import websockets.server as ws_server
import wsproto
import wsproto.events as wp_events
from websockets.exceptions import InvalidStatus as WsInvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory as WsClientDeflate
from websockets.extensions.permessage_deflate import PerMessageDeflate as WsPerMessageDeflate
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory as WsServerDeflate
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import OPEN as WS_OPEN
from websockets.protocol import Protocol as WsProtocol
from websockets.protocol import Side as WsSide
from websockets.uri import parse_uri as ws_parse_uri
from wsproto.connection import ConnectionType
from wsproto.extensions import PerMessageDeflate as WpPerMessageDeflate

from wskit import ClientProtocol, Protocol, ServerProtocol, Side, State
from wskit.events import ConnectionClosed, Request, Response, TextMessage
from wskit.exceptions import InvalidHandshake, NegotiationError
from wskit.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

URI = "ws://example.com/chat?room=1"
MESSAGE = "a message long enough to be worth compressing, " * 8
REJECT_BODY = "go away: you are not on the list\n"
Pairs = list[tuple[str, str]]


def lower_pairs(pairs: Sequence[tuple[str, str]] | Sequence[tuple[bytes, bytes]]) -> Pairs:
    """Header pairs as ``(lower-case name, value)`` strings, whatever the library's types."""
    out: Pairs = []
    for name, value in pairs:
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        v = value.decode("latin-1") if isinstance(value, bytes) else value
        out.append((n.lower(), v))
    return out


def rsv1(frame: bytes) -> bool:
    """Whether the first frame in ``frame`` has RSV1 set (a compressed message, RFC 7692 §6)."""
    return bool(frame[0] & 0x40)


class Outcome(NamedTuple):
    """What a client reports once it has read the server's answer."""

    accepted: bool
    status: int
    subprotocol: str | None
    headers: Pairs
    body: bytes
    messages: list[str]
    deflate: bool


# ---------------------------------------------------------------------------
# Clients


class Client:
    """A client under test: builds the request, reads the answer, exchanges text."""

    name = ""

    def request(self) -> bytes:
        """The upgrade request's bytes."""
        raise NotImplementedError

    def receive_handshake(self, data: bytes) -> Outcome:
        """Feed the server's answer (and anything after it) in one call."""
        raise NotImplementedError

    def send_text(self, text: str) -> bytes:
        """A text message's bytes, once open."""
        raise NotImplementedError

    def receive(self, data: bytes) -> list[str]:
        """The text messages in ``data``, once open."""
        raise NotImplementedError

    def early_frame(self, text: str, deflate: bool) -> bytes:
        """A masked text frame as this library frames it, to send before the 101 arrives."""
        raise NotImplementedError


class WskitClient(Client):
    name = "wskit"

    def __init__(self, subprotocols: Sequence[str] | None, extra_headers: Pairs | None, deflate: bool) -> None:
        self.p = ClientProtocol(URI, subprotocols=subprotocols, extra_headers=extra_headers,
                                extensions=[ClientPerMessageDeflateFactory()] if deflate else [])

    def request(self) -> bytes:
        return b"".join(self.p.connect())

    def receive_handshake(self, data: bytes) -> Outcome:
        try:
            events = self.p.receive_data(data)
        except InvalidHandshake as exc:
            assert self.p.state is State.CLOSED
            response = exc.response
            assert response is not None
            return Outcome(False, response.status_code, None, lower_pairs(list(response.headers)), response.body,
                           [], False)
        assert self.p.state is State.OPEN
        first = events[0]
        assert isinstance(first, Response)
        texts = [e.data for e in events[1:] if isinstance(e, TextMessage)]
        return Outcome(True, first.status_code, self.p.subprotocol, lower_pairs(list(first.headers)),
                       first.body, texts, bool(self.p.extensions))

    def send_text(self, text: str) -> bytes:
        return b"".join(self.p.send_text(text))

    def receive(self, data: bytes) -> list[str]:
        return [e.data for e in self.p.receive_data(data) if isinstance(e, TextMessage)]

    def early_frame(self, text: str, deflate: bool) -> bytes:
        framer = Protocol(Side.CLIENT, extensions=[PerMessageDeflate()] if deflate else [])
        return b"".join(framer.send_text(text))


class WebsocketsClient(Client):
    name = "websockets"

    def __init__(self, subprotocols: Sequence[str] | None, extra_headers: Pairs | None, deflate: bool) -> None:
        self.p = ws_client.ClientProtocol(ws_parse_uri(URI), subprotocols=subprotocols,  # type: ignore[arg-type]
                                          extensions=[WsClientDeflate()] if deflate else None)
        self.extra_headers = extra_headers or []

    def request(self) -> bytes:
        request = self.p.connect()
        for name, value in self.extra_headers:
            request.headers[name] = value
        self.p.send_request(request)
        return b"".join(self.p.data_to_send())

    def receive_handshake(self, data: bytes) -> Outcome:
        self.p.receive_data(data)
        events = self.p.events_received()
        response = events[0]
        assert isinstance(response, WsResponse)
        headers = lower_pairs(list(response.headers.raw_items()))
        if self.p.handshake_exc is not None:
            return Outcome(False, response.status_code, None, headers, bytes(response.body or b""), [], False)
        texts = [bytes(e.data).decode() for e in events[1:] if isinstance(e, WsFrame) and e.opcode is WsOpcode.TEXT]
        deflate = any(ext.name == "permessage-deflate" for ext in self.p.extensions)
        body = bytes(response.body or b"")
        return Outcome(True, response.status_code, self.p.subprotocol, headers, body, texts, deflate)

    def send_text(self, text: str) -> bytes:
        self.p.send_text(text.encode())
        return b"".join(self.p.data_to_send())

    def receive(self, data: bytes) -> list[str]:
        self.p.receive_data(data)
        return [bytes(e.data).decode() for e in self.p.events_received()
                if isinstance(e, WsFrame) and e.opcode is WsOpcode.TEXT]

    def early_frame(self, text: str, deflate: bool) -> bytes:
        exts = [WsPerMessageDeflate(False, False, 15, 15)] if deflate else []
        framer = WsProtocol(WsSide.CLIENT, state=WS_OPEN)
        framer.extensions = exts  # type: ignore[assignment]
        framer.send_text(text.encode())
        return b"".join(framer.data_to_send())


class WsprotoClient(Client):
    name = "wsproto"

    def __init__(self, subprotocols: Sequence[str] | None, extra_headers: Pairs | None, deflate: bool) -> None:
        self.p = wsproto.WSConnection(ConnectionType.CLIENT)
        self.req = wp_events.Request(
            host="example.com", target="/chat?room=1", subprotocols=list(subprotocols or []),
            extensions=[WpPerMessageDeflate()] if deflate else [],
            extra_headers=[(n.encode(), v.encode()) for n, v in extra_headers or []],
        )

    def request(self) -> bytes:
        return self.p.send(self.req)

    def receive_handshake(self, data: bytes) -> Outcome:
        self.p.receive_data(data)
        events = list(self.p.events())
        first = events[0]
        if isinstance(first, wp_events.RejectConnection):
            body = b"".join(e.data for e in events[1:] if isinstance(e, wp_events.RejectData))
            return Outcome(False, first.status_code, None, lower_pairs(list(first.headers)), body, [], False)
        assert isinstance(first, wp_events.AcceptConnection)
        texts = [e.data for e in events[1:] if isinstance(e, wp_events.TextMessage)]
        deflate = any(isinstance(ext, WpPerMessageDeflate) for ext in first.extensions)
        return Outcome(True, 101, first.subprotocol, lower_pairs(list(first.extra_headers)), b"", texts, deflate)

    def send_text(self, text: str) -> bytes:
        return self.p.send(wp_events.TextMessage(data=text))

    def receive(self, data: bytes) -> list[str]:
        self.p.receive_data(data)
        return [e.data for e in self.p.events() if isinstance(e, wp_events.TextMessage)]

    def early_frame(self, text: str, deflate: bool) -> bytes:
        ext = WpPerMessageDeflate()
        ext.finalize("permessage-deflate")  # as if a server had accepted the default offer
        framer = wsproto.connection.Connection(ConnectionType.CLIENT, extensions=[ext] if deflate else [])
        return framer.send(wp_events.TextMessage(data=text))


# ---------------------------------------------------------------------------
# Servers


class Server:
    """A server under test: reads the request, accepts or rejects, exchanges text."""

    name = ""
    subprotocol: str | None

    def receive_request(self, data: bytes) -> Pairs:
        """Feed the request; return its headers."""
        raise NotImplementedError

    def accept(self, extra_headers: Pairs | None = None) -> bytes:
        """The 101 response's bytes."""
        raise NotImplementedError

    def reject(self, status: int, body: str) -> bytes:
        """An error response's bytes."""
        raise NotImplementedError

    @property
    def deflate(self) -> bool:
        """Whether permessage-deflate is in use."""
        raise NotImplementedError

    def send_text(self, text: str) -> bytes:
        """A text message's bytes, once open."""
        raise NotImplementedError

    def receive(self, data: bytes) -> list[str]:
        """The text messages in ``data``, once open."""
        raise NotImplementedError


def prefer_server(server_order: Sequence[str], offered: Sequence[str]) -> str | None:
    """RFC 6455 §4.2.2: the server's pick; here its first supported one the client offered."""
    return next((s for s in server_order if s in offered), None)


class WskitServer(Server):
    name = "wskit"

    def __init__(self, subprotocols: Sequence[str] | None, deflate: bool) -> None:
        self.p = ServerProtocol(subprotocols=subprotocols,
                                extensions=[ServerPerMessageDeflateFactory()] if deflate else [])

    def receive_request(self, data: bytes) -> Pairs:
        events = self.p.receive_data(data)
        assert len(events) == 1 and isinstance(events[0], Request)
        return lower_pairs(list(events[0].headers))

    def accept(self, extra_headers: Pairs | None = None) -> bytes:
        data = b"".join(self.p.accept(extra_headers=extra_headers))
        assert self.p.state is State.OPEN
        self.subprotocol = self.p.subprotocol
        return data

    def reject(self, status: int, body: str) -> bytes:
        data = b"".join(self.p.reject(status, body))
        assert self.p.state is State.CLOSED
        return data

    @property
    def deflate(self) -> bool:
        return bool(self.p.extensions)

    def send_text(self, text: str) -> bytes:
        return b"".join(self.p.send_text(text))

    def receive(self, data: bytes) -> list[str]:
        return [e.data for e in self.p.receive_data(data) if isinstance(e, TextMessage)]


class WebsocketsServer(Server):
    name = "websockets"

    def __init__(self, subprotocols: Sequence[str] | None, deflate: bool) -> None:
        order = list(subprotocols or [])
        # Its default refuses a connection without a common subprotocol (400);
        # its documented hook gives server preference, else no subprotocol.
        self.p = ws_server.ServerProtocol(
            subprotocols=order or None,  # type: ignore[arg-type]
            select_subprotocol=lambda _, offered: prefer_server(order, offered),  # type: ignore[arg-type,return-value]
            extensions=[WsServerDeflate()] if deflate else None,
        )
        self.req: WsRequest | None = None

    def receive_request(self, data: bytes) -> Pairs:
        self.p.receive_data(data)
        events = self.p.events_received()
        assert len(events) == 1 and isinstance(events[0], WsRequest)
        self.req = events[0]
        return lower_pairs(list(self.req.headers.raw_items()))

    def accept(self, extra_headers: Pairs | None = None) -> bytes:
        assert self.req is not None
        response = self.p.accept(self.req)
        assert response.status_code == 101, response.body
        for name, value in extra_headers or []:
            response.headers[name] = value
        self.p.send_response(response)
        self.subprotocol = self.p.subprotocol
        return b"".join(self.p.data_to_send())

    def reject(self, status: int, body: str) -> bytes:
        self.p.send_response(self.p.reject(status, body))
        return b"".join(self.p.data_to_send())

    @property
    def deflate(self) -> bool:
        return any(ext.name == "permessage-deflate" for ext in self.p.extensions)

    def send_text(self, text: str) -> bytes:
        self.p.send_text(text.encode())
        return b"".join(self.p.data_to_send())

    def receive(self, data: bytes) -> list[str]:
        self.p.receive_data(data)
        return [bytes(e.data).decode() for e in self.p.events_received()
                if isinstance(e, WsFrame) and e.opcode is WsOpcode.TEXT]


class WsprotoServer(Server):
    name = "wsproto"

    def __init__(self, subprotocols: Sequence[str] | None, deflate: bool) -> None:
        self.p = wsproto.WSConnection(ConnectionType.SERVER)
        self.order = list(subprotocols or [])
        self.use_deflate = deflate
        self.req: wp_events.Request | None = None
        self.ext = WpPerMessageDeflate()

    def receive_request(self, data: bytes) -> Pairs:
        self.p.receive_data(data)
        events = list(self.p.events())
        assert len(events) == 1 and isinstance(events[0], wp_events.Request)
        self.req = events[0]
        # wsproto takes these two headers out of extra_headers: put them back.
        seen = lower_pairs(list(self.req.extra_headers))
        if self.req.subprotocols:
            seen.append(("sec-websocket-protocol", ", ".join(self.req.subprotocols)))
        if self.req.extensions:
            seen.append(("sec-websocket-extensions", ", ".join(str(e) for e in self.req.extensions)))
        return seen

    def accept(self, extra_headers: Pairs | None = None) -> bytes:
        assert self.req is not None
        self.subprotocol = prefer_server(self.order, self.req.subprotocols)
        return self.p.send(wp_events.AcceptConnection(
            subprotocol=self.subprotocol,
            extensions=[self.ext] if self.use_deflate else [],
            extra_headers=[(n.encode(), v.encode()) for n, v in extra_headers or []],
        ))

    def reject(self, status: int, body: str) -> bytes:
        head = self.p.send(wp_events.RejectConnection(
            status_code=status, has_body=True,
            headers=[(b"content-type", b"text/plain; charset=utf-8"),
                     (b"content-length", str(len(body.encode())).encode())],
        ))
        return head + self.p.send(wp_events.RejectData(data=body.encode()))

    @property
    def deflate(self) -> bool:
        return self.use_deflate and self.ext.enabled()

    def send_text(self, text: str) -> bytes:
        return self.p.send(wp_events.TextMessage(data=text))

    def receive(self, data: bytes) -> list[str]:
        self.p.receive_data(data)
        return [e.data for e in self.p.events() if isinstance(e, wp_events.TextMessage)]


ClientMaker = Callable[[Sequence[str] | None, Pairs | None, bool], Client]
ServerMaker = Callable[[Sequence[str] | None, bool], Server]

PAIRINGS = [
    pytest.param(WskitClient, WskitServer, id="wskit-wskit"),
    pytest.param(WskitClient, WebsocketsServer, id="wskit-websockets"),
    pytest.param(WebsocketsClient, WskitServer, id="websockets-wskit"),
    pytest.param(WskitClient, WsprotoServer, id="wskit-wsproto"),
    pytest.param(WsprotoClient, WskitServer, id="wsproto-wskit"),
]
CLIENTS_OF_WSKIT_SERVER = [
    pytest.param(WskitClient, id="wskit"),
    pytest.param(WebsocketsClient, id="websockets"),
    pytest.param(WsprotoClient, id="wsproto"),
]
SERVERS_OF_WSKIT_CLIENT = [
    pytest.param(WskitServer, id="wskit"),
    pytest.param(WebsocketsServer, id="websockets"),
    pytest.param(WsprotoServer, id="wsproto"),
]


def handshake(
    make_client: ClientMaker,
    make_server: ServerMaker,
    *,
    client_subprotocols: Sequence[str] | None = None,
    server_subprotocols: Sequence[str] | None = None,
    client_headers: Pairs | None = None,
    server_headers: Pairs | None = None,
    deflate: bool = False,
) -> tuple[Client, Server, Pairs, Outcome]:
    """Run a successful handshake; return both ends, the request headers seen and the client's outcome."""
    client = make_client(client_subprotocols, client_headers, deflate)
    server = make_server(server_subprotocols, deflate)
    seen = server.receive_request(client.request())
    outcome = client.receive_handshake(server.accept(server_headers))
    assert outcome.accepted and outcome.status == 101
    assert outcome.messages == []
    return client, server, seen, outcome


# ---------------------------------------------------------------------------
# Every pairing


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
def test_subprotocol_follows_server_preference(make_client: ClientMaker, make_server: ServerMaker) -> None:
    _, server, seen, outcome = handshake(make_client, make_server, client_subprotocols=["chat", "superchat"],
                                         server_subprotocols=["superchat", "chat"])
    # The offer went out in the client's order; the server's preference won.
    offered = [v.strip() for name, value in seen if name == "sec-websocket-protocol" for v in value.split(",")]
    assert offered == ["chat", "superchat"]
    assert server.subprotocol == "superchat"
    assert outcome.subprotocol == "superchat"
    if make_client is not WsprotoClient:  # wsproto reports it only as AcceptConnection.subprotocol
        assert ("sec-websocket-protocol", "superchat") in outcome.headers


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
def test_no_common_subprotocol_opens_without_one(make_client: ClientMaker, make_server: ServerMaker) -> None:
    client, server, _, outcome = handshake(make_client, make_server, client_subprotocols=["chat"],
                                           server_subprotocols=["mqtt"])
    assert server.subprotocol is None
    assert outcome.subprotocol is None
    assert all(name != "sec-websocket-protocol" for name, _ in outcome.headers)
    assert server.receive(client.send_text("still usable")) == ["still usable"]


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
def test_extra_headers_reach_the_other_side(make_client: ClientMaker, make_server: ServerMaker) -> None:
    _, _, seen, outcome = handshake(
        make_client, make_server,
        client_headers=[("X-Client-Token", "abc 123"), ("Cookie", "session=42")],
        server_headers=[("X-Server-Id", "node-7"), ("Set-Cookie", "seen=1")],
    )
    assert ("x-client-token", "abc 123") in seen
    assert ("cookie", "session=42") in seen
    assert ("x-server-id", "node-7") in outcome.headers
    assert ("set-cookie", "seen=1") in outcome.headers


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
def test_rejection_with_403_and_body(make_client: ClientMaker, make_server: ServerMaker) -> None:
    client = make_client(None, None, False)
    server = make_server(None, False)
    server.receive_request(client.request())
    outcome = client.receive_handshake(server.reject(403, REJECT_BODY))
    assert not outcome.accepted
    assert outcome.status == 403
    assert outcome.body == REJECT_BODY.encode()


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
def test_permessage_deflate_both_ways(make_client: ClientMaker, make_server: ServerMaker) -> None:
    client, server, seen, outcome = handshake(make_client, make_server, deflate=True)
    assert any(name == "sec-websocket-extensions" and value.startswith("permessage-deflate") for name, value in seen)
    assert outcome.deflate and server.deflate
    for round_ in range(2):  # the second message uses the kept context (RFC 7692 §7.2.3.1)
        text = f"{round_}: {MESSAGE}"
        up = client.send_text(text)
        assert rsv1(up) and len(up) < len(text)
        assert server.receive(up) == [text]
        down = server.send_text(text)
        assert rsv1(down) and len(down) < len(text)
        assert client.receive(down) == [text]


@pytest.mark.parametrize(("make_client", "make_server"), PAIRINGS)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_frame_in_the_same_chunk_as_the_101(make_client: ClientMaker, make_server: ServerMaker,
                                            deflate: bool) -> None:
    client = make_client(None, None, deflate)
    server = make_server(None, deflate)
    server.receive_request(client.request())
    accept = server.accept()
    frame = server.send_text(MESSAGE)
    assert rsv1(frame) is deflate
    outcome = client.receive_handshake(accept + frame)
    assert outcome.accepted and outcome.deflate is deflate
    assert outcome.messages == [MESSAGE]


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_wskit_client_events_for_101_and_frame_in_one_chunk(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    server = make_server(None, False)
    server.receive_request(b"".join(client.connect()))
    data = server.accept() + server.send_text("hello") + server.send_text("world")
    events = client.receive_data(data)
    assert [type(e) for e in events] == [Response, TextMessage, TextMessage]
    assert [e.data for e in events[1:] if isinstance(e, TextMessage)] == ["hello", "world"]
    assert client.state is State.OPEN


@pytest.mark.parametrize("make_client", CLIENTS_OF_WSKIT_SERVER)
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate"])
def test_frame_in_the_same_chunk_as_the_request(make_client: ClientMaker, deflate: bool) -> None:
    client = make_client(None, None, deflate)
    frame = client.early_frame(MESSAGE, deflate)
    assert rsv1(frame) is deflate
    assert frame[1] & 0x80, "a client frame is masked"
    server = ServerProtocol(extensions=[ServerPerMessageDeflateFactory()] if deflate else [])
    events = server.receive_data(client.request() + frame)
    # The frame waits until accept() has fixed the extensions.
    assert [type(e) for e in events] == [Request]
    server.accept()
    assert bool(server.extensions) is deflate
    events = server.receive_data(b"")
    assert events == [TextMessage(MESSAGE)]
    assert server.receive_data(b"") == []


def test_frame_in_the_same_chunk_as_the_request_then_more_data() -> None:
    client = ClientProtocol(URI, extensions=[])
    server = ServerProtocol(extensions=[])
    framer = Protocol(Side.CLIENT)
    first = b"".join(framer.send_text("first"))
    second = b"".join(framer.send_text("second"))
    assert server.receive_data(b"".join(client.connect()) + first + second[:3]) != []
    server.accept()
    # The next call returns what was buffered, then what it brings.
    assert server.receive_data(second[3:]) == [TextMessage("first"), TextMessage("second")]


# ---------------------------------------------------------------------------
# Rejections as each client library reports them


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_wskit_client_raises_on_rejection_with_response(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    server = make_server(None, False)
    server.receive_request(b"".join(client.connect()))
    with pytest.raises(InvalidHandshake, match="403") as info:
        client.receive_data(server.reject(403, REJECT_BODY))
    response = info.value.response
    assert response is not None
    assert response.status_code == 403
    assert response.body == REJECT_BODY.encode()
    assert client.response is response
    assert client.state is State.CLOSED


def test_websockets_client_reports_wskit_rejection() -> None:
    client = ws_client.ClientProtocol(ws_parse_uri(URI))
    client.send_request(client.connect())
    server = ServerProtocol(extensions=[])
    server.receive_data(b"".join(client.data_to_send()))
    client.receive_data(b"".join(server.reject(403, REJECT_BODY, headers=[("X-Reason", "blocked")])))
    [response] = client.events_received()
    assert isinstance(response, WsResponse)
    assert isinstance(client.handshake_exc, WsInvalidStatus)
    assert client.handshake_exc.response.status_code == 403
    assert response.body == REJECT_BODY.encode()
    assert response.headers["X-Reason"] == "blocked"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert client.close_expected()  # it now waits for the server to close the connection


def test_wsproto_client_reports_wskit_rejection() -> None:
    client = wsproto.WSConnection(ConnectionType.CLIENT)
    server = ServerProtocol(extensions=[])
    server.receive_data(client.send(wp_events.Request(host="example.com", target="/")))
    client.receive_data(b"".join(server.reject(403, REJECT_BODY)))
    client.receive_data(None)  # the server closes the connection after a rejection
    events = list(client.events())
    reject = events[0]
    assert isinstance(reject, wp_events.RejectConnection)
    assert reject.status_code == 403
    assert reject.has_body
    body = b"".join(e.data for e in events[1:] if isinstance(e, wp_events.RejectData))
    assert body == REJECT_BODY.encode()
    assert isinstance(events[-1], wp_events.RejectData) and events[-1].body_finished


def test_wskit_server_rejection_response_is_well_formed() -> None:
    client = ClientProtocol(URI, extensions=[])
    server = ServerProtocol(extensions=[])
    server.receive_data(b"".join(client.connect()))
    data = b"".join(server.reject(403, REJECT_BODY))
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 ")
    assert body == REJECT_BODY.encode()
    assert re.search(rb"(?im)^content-length: *%d\r?$" % len(body), head)
    assert server.response is not None and server.response.status_code == 403


# ---------------------------------------------------------------------------
# The wskit client against tampered answers of real servers


def accept_of(make_server: ServerMaker, client: ClientProtocol, subprotocols: Sequence[str] | None = None,
              deflate: bool = False) -> bytes:
    """A real server's 101 answer to ``client``'s request."""
    server = make_server(subprotocols, deflate)
    server.receive_request(b"".join(client.connect()))
    return server.accept()


def set_header(response: bytes, name: str, value: str | None) -> bytes:
    """``response`` with header ``name`` replaced by ``value`` (added if absent, removed if ``None``)."""
    head, sep, rest = response.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(name.lower().encode() + b":")]
    if value is not None:
        lines.append(f"{name}: {value}".encode())
    return b"\r\n".join(lines) + sep + rest


def assert_refused(client: ClientProtocol, answer: bytes, error: type[InvalidHandshake], match: str) -> None:
    with pytest.raises(error, match=match) as info:
        client.receive_data(answer)
    response = info.value.response
    assert response is not None and response.status_code == 101
    assert client.response is response
    assert client.state is State.CLOSED
    assert client.close_code == 1006
    assert client.subprotocol is None and client.extensions == []


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_tampered_answers_are_genuine_before_tampering(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, subprotocols=["chat"], extensions=[ClientPerMessageDeflateFactory()])
    events = client.receive_data(accept_of(make_server, client, ["chat"], deflate=True))
    assert [type(e) for e in events] == [Response]
    assert client.subprotocol == "chat" and len(client.extensions) == 1


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_bad_accept_key_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    answer = set_header(accept_of(make_server, client), "Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    assert_refused(client, answer, InvalidHandshake, "Sec-WebSocket-Accept")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_missing_upgrade_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    answer = set_header(accept_of(make_server, client), "Upgrade", None)
    assert_refused(client, answer, InvalidHandshake, "Upgrade")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_subprotocol_not_offered_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, subprotocols=["chat"], extensions=[])
    answer = set_header(accept_of(make_server, client, ["chat"]), "Sec-WebSocket-Protocol", "superchat")
    assert_refused(client, answer, NegotiationError, "superchat")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_subprotocol_when_none_offered_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    answer = set_header(accept_of(make_server, client), "Sec-WebSocket-Protocol", "chat")
    assert_refused(client, answer, NegotiationError, "chat")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_extension_not_offered_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    answer = set_header(accept_of(make_server, client), "Sec-WebSocket-Extensions", "permessage-deflate")
    assert_refused(client, answer, NegotiationError, "permessage-deflate")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_unknown_extension_is_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[ClientPerMessageDeflateFactory()])
    answer = accept_of(make_server, client, deflate=True)
    answer = set_header(answer, "Sec-WebSocket-Extensions", "x-webkit-deflate-frame")
    assert_refused(client, answer, NegotiationError, "x-webkit-deflate-frame")


@pytest.mark.parametrize("make_server", SERVERS_OF_WSKIT_CLIENT)
def test_tampered_answer_with_trailing_frame_is_still_refused(make_server: ServerMaker) -> None:
    client = ClientProtocol(URI, extensions=[])
    server = make_server(None, False)
    server.receive_request(b"".join(client.connect()))
    answer = set_header(server.accept(), "Sec-WebSocket-Accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert_refused(client, answer + server.send_text("never delivered"), InvalidHandshake, "Sec-WebSocket-Accept")


# ---------------------------------------------------------------------------
# permessage-deflate parameters (RFC 7692 §7.1) and less common rejection bodies

DEFLATE_OFFERS = [
    pytest.param({}, id="default"),
    pytest.param({"server_no_context_takeover": True}, id="server_no_context_takeover"),
    pytest.param({"client_no_context_takeover": True}, id="client_no_context_takeover"),
    pytest.param({"server_max_window_bits": 9}, id="server_max_window_bits"),
    pytest.param({"client_max_window_bits": 9}, id="client_max_window_bits"),
]


def exchange_three(send_up: Callable[[str], bytes], receive_up: Callable[[bytes], list[str]],
                   send_down: Callable[[str], bytes], receive_down: Callable[[bytes], list[str]]) -> None:
    """Three compressed messages each way: a context kept or reset wrongly shows by the second."""
    for i in range(3):
        text = f"{i} {MESSAGE}"
        up, down = send_up(text), send_down(text)
        assert rsv1(up) and rsv1(down)
        assert receive_up(up) == [text]
        assert receive_down(down) == [text]


@pytest.mark.parametrize("offer", DEFLATE_OFFERS)
def test_deflate_offer_from_websockets_client(offer: dict[str, object]) -> None:
    client = WebsocketsClient(None, None, False)
    client.p.available_extensions = [WsClientDeflate(**offer)]  # type: ignore[arg-type]
    server = WskitServer(None, True)
    server.receive_request(client.request())
    outcome = client.receive_handshake(server.accept())
    assert outcome.accepted and outcome.deflate and server.deflate
    answer = dict(outcome.headers)["sec-websocket-extensions"]
    for name, value in offer.items():  # every request parameter is honoured in the answer
        expected = name if value is True else f"{name}={value}"
        assert expected in answer
    exchange_three(client.send_text, server.receive, server.send_text, client.receive)


@pytest.mark.parametrize("offer", DEFLATE_OFFERS)
def test_deflate_offer_from_wskit_client_to_websockets(offer: dict[str, object]) -> None:
    client = ClientProtocol(URI, extensions=[ClientPerMessageDeflateFactory(**offer)])  # type: ignore[arg-type]
    server = WebsocketsServer(None, True)
    server.receive_request(b"".join(client.connect()))
    assert [type(e) for e in client.receive_data(server.accept())] == [Response]
    assert server.deflate and len(client.extensions) == 1
    exchange_three(lambda t: b"".join(client.send_text(t)), server.receive, server.send_text,
                   lambda d: [e.data for e in client.receive_data(d) if isinstance(e, TextMessage)])


@pytest.mark.parametrize("offer", DEFLATE_OFFERS)
def test_deflate_offer_from_wsproto_client(offer: dict[str, object]) -> None:
    client = WsprotoClient(None, None, False)
    client.req = wp_events.Request(host="example.com", target="/", extensions=[WpPerMessageDeflate(**offer)])  # type: ignore[arg-type]
    server = WskitServer(None, True)
    server.receive_request(client.request())
    outcome = client.receive_handshake(server.accept())
    assert outcome.accepted and outcome.deflate and server.deflate
    exchange_three(client.send_text, server.receive, server.send_text, client.receive)


@pytest.mark.parametrize("offer", DEFLATE_OFFERS)
def test_deflate_offer_from_wskit_client_to_wsproto(offer: dict[str, object]) -> None:
    client = ClientProtocol(URI, extensions=[ClientPerMessageDeflateFactory(**offer)])  # type: ignore[arg-type]
    server = WsprotoServer(None, True)
    server.receive_request(b"".join(client.connect()))
    assert [type(e) for e in client.receive_data(server.accept())] == [Response]
    assert server.deflate and len(client.extensions) == 1
    exchange_three(lambda t: b"".join(client.send_text(t)), server.receive, server.send_text,
                   lambda d: [e.data for e in client.receive_data(d) if isinstance(e, TextMessage)])


def test_wskit_client_reads_a_chunked_rejection_from_wsproto() -> None:
    client = ClientProtocol(URI, extensions=[])
    server = wsproto.WSConnection(ConnectionType.SERVER)
    server.receive_data(b"".join(client.connect()))
    list(server.events())
    # Without a Content-Length, h11 sends the body chunked (RFC 9112 §7.1).
    data = server.send(wp_events.RejectConnection(status_code=403, has_body=True))
    data += server.send(wp_events.RejectData(data=REJECT_BODY.encode()))
    assert b"chunked" in data.lower()
    with pytest.raises(InvalidHandshake) as info:
        client.receive_data(data)
    assert info.value.response is not None
    assert info.value.response.status_code == 403
    assert info.value.response.body == REJECT_BODY.encode()
    assert client.state is State.CLOSED


def test_wskit_client_reads_a_rejection_body_ending_at_eof() -> None:
    client = ClientProtocol(URI, extensions=[])
    client.connect()
    # No Content-Length nor chunking: the body runs to the end of the connection (RFC 9112 §6.3).
    assert client.receive_data(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n" + REJECT_BODY.encode()) == []
    [closed] = client.receive_eof()
    assert isinstance(closed, ConnectionClosed)
    assert isinstance(closed.exception, InvalidHandshake)
    assert closed.exception.response is not None
    assert closed.exception.response.status_code == 403
    assert client.response is not None and client.response.body == REJECT_BODY.encode()
    assert client.state is State.CLOSED
