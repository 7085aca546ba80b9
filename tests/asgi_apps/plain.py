"""A plain ASGI application (no framework), one behaviour per path.

Served by ``uvicorn asgi_apps.plain:app --ws wskit.asgi:UvicornProtocol``
(``--app-dir tests``). What the application saw that a client cannot see
(how a ``send`` ended, the disconnect it got) is kept in :data:`REPORT` and
read through ``/report``; what happens at shutdown is printed to stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any
from urllib.parse import parse_qs

REPORT: dict[str, Any] = {}
_gates: dict[str, asyncio.Event] = {}


def _gate(name: str) -> asyncio.Event:
    """The event ``/release?gate=NAME`` sets (``NAME`` defaults to ``stall``)."""
    return _gates.setdefault(name, asyncio.Event())


async def _echo(receive: Any, send: Any, key: str) -> None:
    """Echo every message; record the disconnect under ``key``."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            REPORT[key] = message
            return
        await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})


async def _until_disconnect(receive: Any) -> dict[str, Any]:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return dict(message)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Route by path (see each branch)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        return
    assert scope["type"] == "websocket"
    path = scope["path"].removeprefix(scope["root_path"])
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    connect = await receive()
    assert connect == {"type": "websocket.connect"}, connect
    key = query.get("key", path)

    if path == "/echo":  # echo; the first offered subprotocol; the disconnect recorded under ?key=
        offered = scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": offered[0] if offered else None,
                    "headers": [(b"x-app", b"plain")]})
        await _echo(receive, send, key)
    elif path == "/accept-late":  # prints "KEY: waiting", accepts once ?gate= is released, then echoes
        print(f"{key}: waiting", file=sys.stderr, flush=True)
        await _gate(query["gate"]).wait()
        await send({"type": "websocket.accept"})
        await _echo(receive, send, key)
    elif path == "/accept-report":  # records how its accept ended, then the message receive gives
        try:
            await send({"type": "websocket.accept"})
        except OSError as exc:
            REPORT[key] = {"raised": type(exc).__name__, "code": getattr(exc, "code", None)}
        else:
            REPORT[key] = {"raised": None}
        REPORT[key]["then"] = await receive()
    elif path == "/scope":  # the scope as JSON
        await send({"type": "websocket.accept"})
        shown = {k: v for k, v in scope.items() if k not in ("state", "headers")}
        shown["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
        for name in ("raw_path", "query_string"):
            shown[name] = scope[name].decode("latin-1")
        await send({"type": "websocket.send", "text": json.dumps(shown)})
        await send({"type": "websocket.close"})
    elif path == "/close":  # the application closes with ?code= and ?reason= (each left out when not given)
        await send({"type": "websocket.accept"})
        close: dict[str, Any] = {"type": "websocket.close"}
        if "code" in query:
            close["code"] = int(query["code"])
        if "reason" in query:
            close["reason"] = query["reason"]
        await send(close)
        try:
            await send({"type": "websocket.send", "text": "after close"})
        except OSError as exc:
            REPORT[key] = {"send after close": type(exc).__name__, "oserror": isinstance(exc, OSError)}
    elif path == "/deny-close":  # websocket.close before accept: 403
        await send({"type": "websocket.close"})
        REPORT[key] = await receive()
    elif path == "/deny":  # its own HTTP response, the body in two parts
        await send({"type": "websocket.http.response.start", "status": 418,
                    "headers": [(b"content-type", b"text/plain"), (b"x-deny", b"yes")]})
        await send({"type": "websocket.http.response.body", "body": b"no tea ", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b"for you"})
    elif path == "/raise-before":
        raise RuntimeError("boom before accept")
    elif path == "/raise-after":
        await send({"type": "websocket.accept"})
        await receive()
        raise RuntimeError("boom after accept")
    elif path == "/return-early":
        return
    elif path == "/return-value":  # returns 42, not None (logged); ?close=1: closes first (no code given)
        await send({"type": "websocket.accept"})
        if query.get("close") == "1":
            await send({"type": "websocket.close"})
            return "closed"  # type: ignore[return-value]
        return 42  # type: ignore[return-value]
    elif path == "/deny-then-send":  # denied (403), then sends: ClientDisconnected, left to propagate
        await send({"type": "websocket.close"})
        try:
            await send({"type": "websocket.send", "text": "after the denial"})
        except OSError as exc:
            REPORT[key] = {"raised": type(exc).__name__}
        await send({"type": "websocket.send", "text": "again"})
    elif path == "/invalid":  # ?before=1: before accept; ?case= picks the bad message; then waits
        # (?propagate=1: lets the RuntimeError out instead)
        bad = {
            "send-before-accept": {"type": "websocket.send", "text": "too early"},
            "accept-twice": {"type": "websocket.accept"},
            "text-not-str": {"type": "websocket.send", "text": 42},
            "both": {"type": "websocket.send", "text": "a", "bytes": b"b"},
            "neither": {"type": "websocket.send"},
            "unknown": {"type": "websocket.bogus"},
            "bad-code": {"type": "websocket.close", "code": 1006},
        "bool-code": {"type": "websocket.close", "code": True},
            "no-type": {"text": "x"},
            "bad-status": {"type": "websocket.http.response.start", "status": 99},
            "subprotocol-not-str": {"type": "websocket.accept", "subprotocol": 5},
        "subprotocol-not-offered": {"type": "websocket.accept", "subprotocol": "never-offered"},
        "not-a-message": {"type": "websocket.not-a-message"},
            "accept-bad-headers": {"type": "websocket.accept", "headers": [("x-str", "not bytes")]},
            "start-bad-headers": {"type": "websocket.http.response.start", "status": 200, "headers": [("a", "b")]},
            # After websocket.http.response.start: the messages sent first, then the bad one.
            "not-body": [{"type": "websocket.http.response.start", "status": 200}, {"type": "websocket.accept"}],
            "body-not-bytes": [{"type": "websocket.http.response.start", "status": 200},
                               {"type": "websocket.http.response.body", "body": "a str"}],
            "body-on-204": [{"type": "websocket.http.response.start", "status": 204},
                            {"type": "websocket.http.response.body", "body": b"no body allowed"}],
        }[query["case"]]
        if query.get("before") != "1":
            await send({"type": "websocket.accept"})
        if isinstance(bad, list):
            *first, bad = bad
            for message in first:
                await send(message)
        if query.get("propagate") == "1":
            await send(bad)
        try:
            await send(bad)
        except RuntimeError as exc:
            REPORT[key] = {"raised": type(exc).__name__, "message": str(exc)}
        else:
            REPORT[key] = {"raised": None}
        REPORT[key]["then"] = await _until_disconnect(receive)  # must not hang
    elif path == "/stall":  # takes one message, waits for /release, then counts until "end"
        await send({"type": "websocket.accept"})
        await receive()
        await _gate("stall").wait()
        count = 0
        while (await receive()).get("text") != "end":
            count += 1
        await send({"type": "websocket.send", "text": str(count)})
        await _until_disconnect(receive)
    elif path == "/release":  # sets the event of ?gate= (default: /stall's)
        _gate(query.get("gate", "stall")).set()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close"})
    elif path == "/flood":  # sends 64 KiB messages until a send waits 2 s
        await send({"type": "websocket.accept"})
        sent = 0
        chunk = b"x" * 65536
        while sent < 2**30:
            try:
                await asyncio.wait_for(send({"type": "websocket.send", "bytes": chunk}), 2)
            except asyncio.TimeoutError:  # asyncio.wait_for's (TimeoutError from Python 3.11)
                break
            sent += len(chunk)
        REPORT[key] = {"sent before waiting": sent}
        await _until_disconnect(receive)
    elif path == "/stubborn":  # accepted; after its disconnect, it never returns (cancelled at shutdown)
        await send({"type": "websocket.accept"})
        message = await _until_disconnect(receive)
        print(f"{key}: disconnect {message['code']}", file=sys.stderr, flush=True)
        await asyncio.Event().wait()
    elif path == "/report":  # REPORT[?key=] as JSON
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(REPORT.get(query["of"]))})
        await send({"type": "websocket.close"})
    elif path == "/hold":  # accepted (or not, with ?accept=0); prints the disconnect it gets
        if query.get("accept", "1") == "1":
            await send({"type": "websocket.accept"})
        message = await _until_disconnect(receive)
        print(f"{key}: disconnect {message['code']}", file=sys.stderr, flush=True)
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError:
            print(f"{key}: send raised OSError", file=sys.stderr, flush=True)
    else:
        await send({"type": "websocket.close"})
