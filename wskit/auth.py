"""HTTP Basic authentication for the opening handshake (RFC 7617), without I/O.

The I/O layers' ``basic_auth`` (:func:`wskit.asyncio.basic_auth`,
:func:`wskit.sync.basic_auth`) build on these pieces: reading the
``Authorization`` header (:func:`parse_basic_authorization`), checking a user
name and password against a table in constant time
(:func:`check_credentials_table`), and the ``401`` answer carrying
``WWW-Authenticate: Basic realm="..."`` (:func:`unauthorized`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from .events import Request, Response
from .headers import Headers

__all__ = [
    "Credentials",
    "authorization_header",
    "check_credentials_table",
    "parse_basic_authorization",
    "request_credentials",
    "unauthorized",
]

Credentials = tuple[str, str] | Iterable[tuple[str, str]] | Mapping[str, str]
"""Accepted user names and passwords: one ``(username, password)`` pair, a
list of pairs, or a ``{username: password}`` mapping."""


def parse_basic_authorization(value: str) -> tuple[str, str]:
    """Read the user name and password of an ``Authorization: Basic ...`` value.

    Args:
        value: the header's value.

    Returns:
        ``(username, password)``.

    Raises:
        ValueError: another scheme, a token that is not base64, or decoded
            credentials without a ``:`` or not in UTF-8.
    """
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise ValueError(f"Authorization: the Basic scheme is expected, got {value[:40]!r}")
    token = token.strip()
    try:
        decoded = base64.b64decode(token.encode("ascii"), validate=True).decode("utf-8")
    except (UnicodeError, binascii.Error, ValueError):
        raise ValueError("Authorization: the credentials are not base64-encoded UTF-8") from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise ValueError("Authorization: the credentials have no ':' between user name and password")
    return username, password


def authorization_header(username: str, password: str) -> str:
    """Build an ``Authorization`` value for Basic authentication (the client's half).

    Raises:
        ValueError: the user name contains a ``:``.
    """
    if ":" in username:
        raise ValueError(f"a user name may not contain ':' (RFC 7617): {username!r}")
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def request_credentials(request: Request) -> tuple[str, str] | None:
    """The user name and password a request carries, or ``None``.

    ``None`` when the request has no ``Authorization`` header, several, or
    one that :func:`parse_basic_authorization` cannot read: each of these is
    answered with a 401, never an exception.
    """
    values = request.headers.get_all("Authorization")
    if len(values) != 1:
        return None
    try:
        return parse_basic_authorization(values[0])
    except ValueError:
        return None


def check_credentials_table(credentials: Credentials) -> Callable[[str, str], bool]:
    """Return a check of a user name and password against ``credentials``.

    The password comparison takes the same time whatever the password given
    (:func:`hmac.compare_digest`), also for an unknown user.

    Args:
        credentials: one ``(username, password)`` pair, a list of pairs, or
            a ``{username: password}`` mapping.

    Raises:
        TypeError: ``credentials`` has another shape.
    """
    table: dict[str, str] = {}
    if isinstance(credentials, Mapping):
        items: Iterable[object] = credentials.items()
    elif isinstance(credentials, tuple) and len(credentials) == 2 and all(isinstance(c, str) for c in credentials):
        items = [credentials]
    elif isinstance(credentials, Iterable) and not isinstance(credentials, (str, bytes)):
        items = list(credentials)
    else:
        raise TypeError(f"credentials must be a (username, password) pair, a list of pairs or a dict, "
                        f"not {type(credentials).__name__}")
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2 and all(isinstance(c, str) for c in item)):
            raise TypeError(f"credentials: each entry must be a (username, password) pair of str, got {item!r}")
        table[item[0]] = item[1]
    if not table:
        raise ValueError("credentials: at least one (username, password) pair is needed")
    dummy = "\0" * 16

    def check(username: str, password: str) -> bool:
        expected = table.get(username)
        same = hmac.compare_digest(password.encode(), (dummy if expected is None else expected).encode())
        return same and expected is not None

    return check


def credentials_check(credentials: Credentials | None, check_credentials: Any, *,
                      layer: str = "wskit.asyncio") -> Any:
    """The check ``basic_auth()`` uses: a table of ``credentials``, or ``check_credentials``.

    Args:
        credentials: as for :func:`check_credentials_table`.
        check_credentials: a function ``(username, password) -> bool``.
        layer: the I/O layer asking; ``wskit.sync`` runs no event loop, so it
            refuses a coroutine function.

    Raises:
        TypeError: neither or both given, ``credentials`` of another shape,
            ``check_credentials`` not callable (or a coroutine function for
            ``wskit.sync``).
    """
    if (credentials is None) == (check_credentials is None):
        raise TypeError("basic_auth() takes credentials= or check_credentials=, exactly one of them")
    if credentials is not None:
        return check_credentials_table(credentials)
    if not callable(check_credentials):
        raise TypeError(f"check_credentials must be a function (username, password) -> bool, "
                        f"not {type(check_credentials).__name__}")
    if layer == "wskit.sync" and inspect.iscoroutinefunction(check_credentials):
        raise TypeError("check_credentials must be a plain function in wskit.sync, not a coroutine function "
                        "(wskit.asyncio.basic_auth takes both)")
    return check_credentials


def unauthorized(realm: str, text: str = "Missing or wrong credentials.\n") -> Response:
    """The ``401 Unauthorized`` answer asking for Basic credentials.

    Args:
        realm: the protection space named in ``WWW-Authenticate``.
        text: the plain-text body.

    Raises:
        ValueError: the realm contains a ``"``, a ``\\`` or a control character.
    """
    if any(c in realm for c in '"\\') or any(ord(c) < 0x20 or ord(c) == 0x7F for c in realm):
        raise ValueError(f"realm may not contain quotes, backslashes or control characters: {realm!r}")
    body = text.encode("utf-8")
    headers = Headers([
        ("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ])
    return Response(401, HTTPStatus.UNAUTHORIZED.phrase, headers, body)
