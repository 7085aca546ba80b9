"""Small real servers for the client tests: an HTTP CONNECT proxy, a SOCKS4/5 proxy,
a redirecting HTTP server and a wskit echo server, each on 127.0.0.1 on a free port,
run in threads and stopped by the test (context managers)."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from wskit.sync import ServerConnection, serve

HOST = "127.0.0.1"


class _ThreadedServer:
    """Accept connections in a thread; each one is handled by ``handle`` in its own thread."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.tls = tls
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.stopped = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> Any:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._acceptor.join(5)
        for thread in self._threads:
            thread.join(5)

    def track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.track(sock)
            thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
            with self._lock:
                self._threads.append(thread)
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock = self.track(self.tls.wrap_socket(sock, server_side=True))
            self.handle(sock)
        except (OSError, ValueError):
            pass
        finally:
            sock.close()

    def handle(self, sock: socket.socket) -> None:
        raise NotImplementedError


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError("closed before the end of the head")
        data += chunk
    return data


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy a → b until EOF, then half-close b."""
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        b.shutdown(socket.SHUT_WR)


def _tunnel(server: _ThreadedServer, client: socket.socket, upstream: socket.socket) -> None:
    server.track(upstream)
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join(10)
    upstream.close()


class HTTPProxy(_ThreadedServer):
    """An HTTP CONNECT proxy.

    Args:
        credentials: ``(user, password)`` it requires (407 otherwise).
        behaviour: ``"tunnel"`` (default), ``"refuse"`` (403), ``"garbage"``
            (answers bytes that are not HTTP), ``"silent"`` (never answers),
            ``"unreachable"`` (502, as when it cannot reach the server).
        tls: a server context: an ``https://`` proxy.

    Attributes:
        requests: the head of each request received (bytes).
    """

    def __init__(self, credentials: tuple[str, str] | None = None, behaviour: str = "tunnel",
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.credentials = credentials
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.targets: list[str] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}"

    def handle(self, sock: socket.socket) -> None:
        head = _read_head(sock)
        self.requests.append(head)
        if self.behaviour == "silent":
            self.stopped.wait(30)
            return
        if self.behaviour == "garbage":
            sock.sendall(b"\x00\x01garbage, not HTTP\r\n\r\n")
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if method != "CONNECT":
            sock.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        if self.credentials is not None:
            expected = "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != expected:
                sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                             b"Proxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 6\r\n\r\ndenied")
                return
        if self.behaviour == "refuse":
            sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        if self.behaviour == "unreachable":
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        host, _, port = target.rpartition(":")
        self.targets.append(target)
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        except OSError:
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        upstream.settimeout(None)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        _tunnel(self, sock, upstream)


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


class SocksProxy(_ThreadedServer):
    """A SOCKS5 (RFC 1928, user/password RFC 1929) and SOCKS4/4a proxy, CONNECT only.

    Attributes:
        targets: ``(version, host, port)`` of each tunnel asked for.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.credentials = credentials
        self.targets: list[tuple[int, str, int]] = []

    def url(self, scheme: str = "socks5", user_info: str = "") -> str:
        return f"{scheme}://{user_info}{HOST}:{self.port}"

    def handle(self, sock: socket.socket) -> None:
        version = _recv_exact(sock, 1)[0]
        if version == 4:
            self._socks4(sock)
        elif version == 5:
            self._socks5(sock)

    def _socks4(self, sock: socket.socket) -> None:
        _command, port = struct.unpack("!BH", _recv_exact(sock, 3))
        address = _recv_exact(sock, 4)
        while _recv_exact(sock, 1) != b"\x00":  # user id
            pass
        host = socket.inet_ntoa(address)
        if address[:3] == b"\x00\x00\x00" and address[3]:  # SOCKS4a: the name follows
            name = b""
            while (char := _recv_exact(sock, 1)) != b"\x00":
                name += char
            host = name.decode()
        self.targets.append((4, host, port))
        upstream = socket.create_connection((host, port), timeout=5)
        upstream.settimeout(None)
        sock.sendall(b"\x00\x5a" + b"\x00" * 6)
        _tunnel(self, sock, upstream)

    def _socks5(self, sock: socket.socket) -> None:
        methods = _recv_exact(sock, _recv_exact(sock, 1)[0])
        if self.credentials is None:
            sock.sendall(b"\x05\x00")
        elif 2 in methods:
            sock.sendall(b"\x05\x02")
            _recv_exact(sock, 1)
            user = _recv_exact(sock, _recv_exact(sock, 1)[0]).decode()
            password = _recv_exact(sock, _recv_exact(sock, 1)[0]).decode()
            if (user, password) != self.credentials:
                sock.sendall(b"\x01\x01")
                return
            sock.sendall(b"\x01\x00")
        else:
            sock.sendall(b"\x05\xff")
            return
        _, _command, _, kind = _recv_exact(sock, 4)
        if kind == 1:
            host = socket.inet_ntoa(_recv_exact(sock, 4))
        elif kind == 3:
            host = _recv_exact(sock, _recv_exact(sock, 1)[0]).decode()
        else:
            host = socket.inet_ntop(socket.AF_INET6, _recv_exact(sock, 16))
        (port,) = struct.unpack("!H", _recv_exact(sock, 2))
        self.targets.append((5, host, port))
        upstream = socket.create_connection((host, port), timeout=5)
        upstream.settimeout(None)
        sock.sendall(b"\x05\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
        _tunnel(self, sock, upstream)


class RedirectServer(_ThreadedServer):
    """Answers every request with ``answer(path)``: ``(status, [(name, value), ...])``.

    Attributes:
        paths: the request target of each request.
        heads: each request's head.
    """

    def __init__(self, answer: Callable[[str], tuple[int, list[tuple[str, str]]]],
                 tls: ssl.SSLContext | None = None) -> None:
        super().__init__(tls)
        self.answer = answer
        self.paths: list[str] = []
        self.heads: list[bytes] = []

    def uri(self, path: str = "/") -> str:
        return f"{'wss' if self.tls else 'ws'}://{HOST}:{self.port}{path}"

    def handle(self, sock: socket.socket) -> None:
        head = _read_head(sock)
        self.heads.append(head)
        path = head.split(b" ")[1].decode()
        self.paths.append(path)
        status, headers = self.answer(path)
        lines = [f"HTTP/1.1 {status} Redirect"] + [f"{k}: {v}" for k, v in headers] + ["Content-Length: 0", "", ""]
        sock.sendall("\r\n".join(lines).encode())


@contextlib.contextmanager
def echo_server(tls: ssl.SSLContext | None = None) -> Iterator[Any]:
    """A wskit.sync echo server; ``.uri``, and ``.requests`` the handshake requests it got."""
    requests: list[Any] = []

    def echo(ws: ServerConnection) -> None:
        requests.append(ws.request)
        for message in ws:
            ws.send(message)

    server = serve(echo, HOST, 0, ssl=tls)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.socket.getsockname()[1]
    server.uri = f"{'wss' if tls else 'ws'}://{HOST}:{port}/"  # type: ignore[attr-defined]
    server.port = port  # type: ignore[attr-defined]
    server.requests = requests  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(5)
