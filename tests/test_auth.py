"""HTTP Basic authentication on the server, in both layers: 401 with WWW-Authenticate, ws.username."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import wskit.asyncio as aws
import wskit.sync as sws
from wskit.auth import (
    authorization_header,
    check_credentials_table,
    parse_basic_authorization,
    request_credentials,
    unauthorized,
)
from wskit.events import Request
from wskit.exceptions import InvalidHandshake
from wskit.headers import Headers

HOST = "127.0.0.1"

BAD_AUTHORIZATIONS = [
    b"Basic",
    b"Basic !!!notbase64",
    b"Basic " + base64.b64encode(b"no-colon"),
    b"Basic " + base64.b64encode(b"\xff\xfe:x"),
    b"Bearer abc",
    b"Basic " + b"A" * 5000,
    b"basic\t" + base64.b64encode(b"ann:wrong"),
    "Basic é".encode(),
]


def header(user: str, password: str) -> dict[str, str]:
    return {"Authorization": authorization_header(user, password)}


def raw_status(port: int, authorization: bytes | None, extra: bytes = b"") -> tuple[bytes, bytes]:
    """Send an upgrade request with this Authorization line; return (status line, whole answer)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        lines = [b"GET / HTTP/1.1", f"Host: {HOST}".encode(), b"Upgrade: websocket", b"Connection: Upgrade",
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version: 13"]
        if authorization is not None:
            lines.append(b"Authorization: " + authorization)
        sock.sendall(b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer.split(b"\r\n", 1)[0], answer


# -- sans-I/O ------------------------------------------------------------------------------


def test_parse_and_build() -> None:
    assert parse_basic_authorization("Basic YW5uOnB3") == ("ann", "pw")
    assert parse_basic_authorization("basic  " + base64.b64encode(b"a:b:c").decode()) == ("a", "b:c")
    assert parse_basic_authorization(authorization_header("zoé", "")) == ("zoé", "")
    with pytest.raises(ValueError, match="Basic scheme"):
        parse_basic_authorization("Bearer x")
    with pytest.raises(ValueError, match="base64"):
        parse_basic_authorization("Basic ***")
    with pytest.raises(ValueError, match="no ':'"):
        parse_basic_authorization("Basic " + base64.b64encode(b"ann").decode())
    with pytest.raises(ValueError, match="may not contain ':'"):
        authorization_header("a:b", "pw")


@given(st.text().filter(lambda u: ":" not in u), st.text())
def test_authorization_round_trip(user: str, password: str) -> None:
    assert parse_basic_authorization(authorization_header(user, password)) == (user, password)


@given(st.text(max_size=200) | st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary()))
def test_any_value_gives_credentials_or_a_value_error(value: str) -> None:
    try:
        user, password = parse_basic_authorization(value)
    except ValueError:
        return
    assert ":" not in user and isinstance(password, str)


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=200))
def test_any_header_value_gives_credentials_or_none(value: str) -> None:
    result = request_credentials(Request("/", Headers([("Authorization", value.strip())])))
    assert result is None or (isinstance(result, tuple) and len(result) == 2)


def test_two_authorization_headers_give_none() -> None:
    headers = Headers([("Authorization", "Basic YW5uOnB3"), ("Authorization", "Basic YW5uOnB3")])
    assert request_credentials(Request("/", headers)) is None


def test_credentials_shapes() -> None:
    for credentials in (("ann", "pw"), [("ann", "pw"), ("bob", "x")], {"ann": "pw", "bob": "x"}):
        check = check_credentials_table(credentials)
        assert check("ann", "pw") and not check("ann", "PW") and not check("eve", "pw") and not check("", "")
    with pytest.raises(TypeError, match="pair"):
        check_credentials_table("ann:pw")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pair of str"):
        check_credentials_table([("ann", "pw", "x")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="at least one"):
        check_credentials_table([])


def test_unauthorized_response() -> None:
    response = unauthorized("my zone")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="my zone", charset="UTF-8"'
    with pytest.raises(ValueError, match="realm"):
        unauthorized('a"b')


@pytest.mark.parametrize("basic_auth", [aws.basic_auth, sws.basic_auth])
def test_basic_auth_arguments(basic_auth: Any) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        basic_auth("zone")
    with pytest.raises(TypeError, match="exactly one"):
        basic_auth("zone", credentials=("a", "b"), check_credentials=lambda u, p: True)
    with pytest.raises(TypeError, match="must be a function"):
        basic_auth("zone", check_credentials="no")
    with pytest.raises(ValueError, match="realm"):
        basic_auth("bad\nrealm", credentials=("a", "b"))


def test_sync_basic_auth_refuses_a_coroutine_function() -> None:
    async def check(user: str, password: str) -> bool:
        return True

    with pytest.raises(TypeError, match=r"plain function in wskit\.sync"):
        sws.basic_auth("zone", check_credentials=check)


# -- asyncio -------------------------------------------------------------------------------


async def whoami(ws: aws.ServerConnection) -> None:
    await ws.send(ws.username or "")


@pytest.mark.parametrize("how", ["credentials", "sync check", "async check"])
def test_asyncio_basic_auth(how: str) -> None:
    async def async_check(user: str, password: str) -> bool:
        await asyncio.sleep(0)
        return (user, password) == ("ann", "pw")

    options: dict[str, Any] = {
        "credentials": {"credentials": [("ann", "pw"), ("bob", "secret")]},
        "sync check": {"check_credentials": lambda u, p: (u, p) == ("ann", "pw")},
        "async check": {"check_credentials": async_check},
    }[how]

    async def main() -> None:
        async with aws.serve(whoami, HOST, 0, process_request=aws.basic_auth("the zone", **options)) as server:
            port = server.sockets[0].getsockname()[1]
            uri = f"ws://{HOST}:{port}/"
            for headers in (None, header("ann", "nope"), header("eve", "pw")):
                with pytest.raises(InvalidHandshake) as info:
                    await aws.connect(uri, extra_headers=headers)
                response = info.value.response
                assert response is not None and response.status_code == 401
                assert response.headers["WWW-Authenticate"] == 'Basic realm="the zone", charset="UTF-8"'
            async with aws.connect(uri, extra_headers=header("ann", "pw")) as ws:
                assert await ws.recv() == "ann"
            for bad in BAD_AUTHORIZATIONS:
                status, answer = await asyncio.to_thread(raw_status, port, bad)
                assert status == b"HTTP/1.1 401 Unauthorized", (bad, answer)
                assert b'WWW-Authenticate: Basic realm="the zone"' in answer
            # Two Authorization headers: refused too.
            status, _ = await asyncio.to_thread(raw_status, port, b"Basic YW5uOnB3",
                                                b"Authorization: Basic YW5uOnB3\r\n")
            assert status == b"HTTP/1.1 401 Unauthorized"
            async with aws.connect(uri, extra_headers=header("ann", "pw")) as ws:  # still serving
                assert await ws.recv() == "ann"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_asyncio_check_that_raises_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    def check(user: str, password: str) -> bool:
        raise RuntimeError("database down")

    async def main() -> None:
        async with aws.serve(whoami, HOST, 0, process_request=aws.basic_auth(check_credentials=check)) as server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(InvalidHandshake) as info:
                await aws.connect(f"ws://{HOST}:{port}/", extra_headers=header("ann", "pw"))
            assert info.value.response is not None and info.value.response.status_code == 500

    asyncio.run(asyncio.wait_for(main(), 30))
    assert any(r.exc_info and "database down" in str(r.exc_info[1]) for r in caplog.records)


# -- threads ---------------------------------------------------------------------------------


@contextlib.contextmanager
def running(server: sws.Server) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server.socket.getsockname()[1]
    finally:
        server.shutdown()
        thread.join()


def sync_whoami(ws: sws.ServerConnection) -> None:
    ws.send(ws.username or "")


@pytest.mark.parametrize("how", ["credentials", "check"])
def test_sync_basic_auth(how: str) -> None:
    options: dict[str, Any] = {
        "credentials": {"credentials": {"ann": "pw", "bob": "secret"}},
        "check": {"check_credentials": lambda u, p: (u, p) == ("ann", "pw")},
    }[how]
    server = sws.serve(sync_whoami, HOST, 0, process_request=sws.basic_auth("the zone", **options))
    with running(server) as port:
        uri = f"ws://{HOST}:{port}/"
        for headers in (None, header("ann", "nope"), header("eve", "pw")):
            with pytest.raises(InvalidHandshake) as info:
                sws.connect(uri, extra_headers=headers)
            response = info.value.response
            assert response is not None and response.status_code == 401
            assert response.headers["WWW-Authenticate"] == 'Basic realm="the zone", charset="UTF-8"'
        with sws.connect(uri, extra_headers=header("ann", "pw")) as ws:
            assert ws.recv(5) == "ann"
        for bad in BAD_AUTHORIZATIONS:
            status, answer = raw_status(port, bad)
            assert status == b"HTTP/1.1 401 Unauthorized", (bad, answer)
            assert b'WWW-Authenticate: Basic realm="the zone"' in answer
        with sws.connect(uri, extra_headers=header("ann", "pw")) as ws:
            assert ws.recv(5) == "ann"
