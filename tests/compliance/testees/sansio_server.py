"""wskit testee: a plain ``socket`` server driving ``wskit.ServerProtocol``.

This is the seed's custom-server pattern made complete: one thread per
connection, ``accept()`` on the ``Request``, echo of text and binary
messages, a pong for every ping, an answer to the peer's close, and, on a
protocol violation, the replies to ``exc.events`` written before
``exc.to_send`` (the order docs/sansio.md documents), then a graceful close of the
TCP connection.

permessage-deflate is on (``ServerPerMessageDeflateFactory``) and there is
no message size limit.

Run: ``python tests/compliance/testees/sansio_server.py --port 9001``
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from wskit import (
    BinaryMessage,
    Close,
    Event,
    Ping,
    Request,
    ServerProtocol,
    State,
    TextMessage,
)
from wskit.exceptions import InvalidState, ProtocolError

from _common import MAX_SIZE, log, parse_args

#: Bytes read per ``recv`` call.
READ_SIZE = 256 * 1024
#: Seconds to wait for the peer's FIN after we shut down our side.
LINGER = 2.0


def reply(protocol: ServerProtocol, event: Event) -> list[bytes]:
    """Return the bytes that answer one event (the echo server's logic)."""
    if isinstance(event, Request):
        return protocol.accept(event)
    if isinstance(event, TextMessage):
        return protocol.send_text(event.data)
    if isinstance(event, BinaryMessage):
        return protocol.send_binary(event.data)
    if isinstance(event, Ping):
        # RFC 6455 §5.5.2: a Ping is answered by a Pong with the same data.
        return protocol.send_pong(event.data)
    if isinstance(event, Close):
        # RFC 6455 §5.5.1: answer the peer's Close, echoing its status code.
        return protocol.send_close(event.code, event.reason)
    return []  # Pong, ConnectionClosed: nothing to answer


def close_gracefully(sock: socket.socket) -> None:
    """Send FIN, drain what the peer still sends until its FIN, then close.

    RFC 6455 §7.1.1: the server closes the TCP connection first. Closing a
    socket with unread data makes the kernel send RST, which can destroy
    our close frame in flight, so read until EOF (or ``LINGER``) first.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER)
        while sock.recv(READ_SIZE):
            pass
    except OSError:
        pass
    finally:
        sock.close()


def handle(sock: socket.socket, deflate: bool) -> None:
    """Run one connection until the close handshake ends or the peer fails."""
    extensions: list[Any] = []
    if deflate:
        from wskit.extensions.permessage_deflate import ServerPerMessageDeflateFactory

        extensions.append(ServerPerMessageDeflateFactory())
    protocol = ServerProtocol(max_size=MAX_SIZE, extensions=extensions)
    try:
        while True:
            data = sock.recv(READ_SIZE)
            if not data:
                protocol.receive_eof()
                return
            out: list[bytes] = []
            try:
                events = protocol.receive_data(data)
                while events:
                    accepted = False
                    for event in events:
                        out.extend(reply(protocol, event))
                        accepted = accepted or isinstance(event, Request)
                    # docs/handshake.md: frames that followed the request come out of the
                    # next receive_data call, once accept() fixed the extensions.
                    events = protocol.receive_data(b"") if accepted else []
            except ProtocolError as exc:
                # Answer what was received correctly before the violation,
                # then write our Close (or the HTTP error response).
                for event in exc.events:
                    try:
                        out.extend(reply(protocol, event))
                    except InvalidState:
                        pass
                out.extend(exc.to_send)
                sock.sendall(b"".join(out))
                protocol.receive_eof()
                return
            if out:
                sock.sendall(b"".join(out))
            if protocol.state is State.CLOSED:
                return
    except OSError as exc:
        log(f"connection error: {exc}")
    finally:
        close_gracefully(sock)


def main() -> None:
    """Serve on 127.0.0.1 until killed."""
    args = parse_args("server", __doc__ or "")
    if not args.no_deflate:  # fail now, not in every connection's thread
        import wskit.extensions.permessage_deflate  # noqa: F401
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    log(f"sansio_server listening on 127.0.0.1:{args.port}")
    try:
        while True:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=handle, args=(conn, not args.no_deflate), daemon=True).start()
    finally:
        listener.close()


if __name__ == "__main__":
    main()
