"""HTTP headers: a case-insensitive multi-mapping, and the header grammars of
the WebSocket opening handshake.

:class:`Headers` keeps header lines in the order they were added (or
received) and looks names up case-insensitively. Iterating over it yields
``(name, value)`` pairs, one per header line (unlike a ``dict``).

The rest of the module parses and serializes the comma-separated
lists used by the handshake (RFC 7230 §7 ``#rule``, RFC 6455 §9.1 and
§11.3.4): ``Connection``, ``Upgrade``, ``Sec-WebSocket-Extensions`` and
``Sec-WebSocket-Protocol``. Several header lines and one comma-joined line
give the same result. Syntax errors raise
:class:`~wskit.exceptions.InvalidHandshake` naming the header, the position
and the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, TypeVar

from ._headermap import _TOKEN_RE, Headers, HeadersLike, MultipleValuesError, is_token
from ._headermap import _check_value as _check_value  # wskit.handshake checks values with it
from .exceptions import InvalidHandshake

__all__ = [
    "Headers",
    "HeadersLike",
    "MultipleValuesError",
    "ExtensionHeader",
    "parse_token_list",
    "parse_upgrade_header",
    "parse_extension_header",
    "serialize_extension_header",
    "parse_subprotocol_header",
    "serialize_subprotocol_header",
    "is_token",
]

# RFC 7230 §3.2.6: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED_RE = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_UNESCAPE_RE = re.compile(r"\\(.)")
# RFC 7230 §3.2.3: OWS = *( SP / HTAB )
_OWS_RE = re.compile(r"[ \t]*")


# Header grammars ---------------------------------------------------------------

ExtensionHeader = list[tuple[str, list[tuple[str, "str | None"]]]]
"""Parsed ``Sec-WebSocket-Extensions``: ``[(name, [(param, value or None), ...]), ...]``."""

_T = TypeVar("_T")


def _fail(header: str, what: str, value: str, pos: int) -> NoReturn:
    raise InvalidHandshake(f"invalid {header} header: {what} at position {pos}: {value!r}")


def _skip_ows(value: str, pos: int) -> int:
    match = _OWS_RE.match(value, pos)
    assert match is not None  # *( SP / HTAB ) always matches
    return match.end()


def _parse_token(value: str, pos: int, header: str) -> tuple[str, int]:
    match = _TOKEN_RE.match(value, pos)
    if match is None:
        _fail(header, "expected token", value, pos)
    return match.group(), match.end()


def _parse_list(
    values: Iterable[str],
    header: str,
    parse_item: Callable[[str, int, str], tuple[_T, int]],
    at_least_one: bool,
) -> list[_T]:
    # RFC 7230 §7: #element => [ ( "," / element ) *( OWS "," [ OWS element ] ) ]
    # (empty elements are allowed and ignored); 1#element needs one element.
    result: list[_T] = []
    for value in values:
        pos = 0
        end = len(value)
        found = False
        while True:
            pos = _skip_ows(value, pos)
            if pos == end:
                break
            if value[pos] == ",":
                pos += 1
                continue
            item, pos = parse_item(value, pos, header)
            result.append(item)
            found = True
            pos = _skip_ows(value, pos)
            if pos == end:
                break
            if value[pos] != ",":
                _fail(header, "expected ','", value, pos)
            pos += 1
        if at_least_one and not found:
            _fail(header, "expected at least one element", value, pos)
    return result


def parse_token_list(values: Iterable[str], header: str) -> list[str]:
    """Parse a comma-separated list of tokens (e.g. ``Connection``).

    Args:
        values: the header's values, one per header line
            (``headers.get_all(header)``).
        header: the header name, used in error messages.

    Returns:
        The tokens in order, case preserved. Empty elements (``"a, , b"``)
        are skipped (RFC 7230 §7); no values gives ``[]``.

    Raises:
        InvalidHandshake: on a syntax error, naming header and position.
    """
    return _parse_list(values, header, _parse_token, at_least_one=False)


def _parse_protocol(value: str, pos: int, header: str) -> tuple[str, int]:
    # RFC 7230 §6.7: protocol = protocol-name ["/" protocol-version]
    name, pos = _parse_token(value, pos, header)
    if pos < len(value) and value[pos] == "/":
        version, pos = _parse_token(value, pos + 1, header)
        name = f"{name}/{version}"
    return name, pos


def parse_upgrade_header(values: Iterable[str]) -> list[str]:
    """Parse ``Upgrade`` header values (RFC 7230 §6.7): ``["websocket", "h2c", "foo/1.0", ...]``.

    Raises:
        InvalidHandshake: on a syntax error.
    """
    return _parse_list(values, "Upgrade", _parse_protocol, at_least_one=True)


def _parse_extension(value: str, pos: int, header: str) -> tuple[tuple[str, list[tuple[str, str | None]]], int]:
    # RFC 6455 §9.1: extension = extension-token *( ";" extension-param )
    name, pos = _parse_token(value, pos, header)
    params: list[tuple[str, str | None]] = []
    end = len(value)
    while True:
        pos = _skip_ows(value, pos)
        if pos == end or value[pos] != ";":
            return (name, params), pos
        pos = _skip_ows(value, pos + 1)
        # RFC 6455 §9.1: extension-param = token [ "=" (token | quoted-string) ]
        param, pos = _parse_token(value, pos, header)
        param_value: str | None = None
        after = _skip_ows(value, pos)
        if after < end and value[after] == "=":
            pos = _skip_ows(value, after + 1)
            if pos < end and value[pos] == '"':
                match = _QUOTED_RE.match(value, pos)
                if match is None:
                    _fail(header, "unterminated or invalid quoted-string", value, pos)
                param_value = _UNESCAPE_RE.sub(r"\1", match.group(1))
                # RFC 6455 §9.1: the unescaped quoted-string MUST conform to token
                if _TOKEN_RE.fullmatch(param_value) is None:
                    _fail(header, f"quoted value {param_value!r} is not a token", value, pos)
                pos = match.end()
            else:
                param_value, pos = _parse_token(value, pos, header)
        params.append((param, param_value))


def parse_extension_header(values: Iterable[str]) -> ExtensionHeader:
    """Parse ``Sec-WebSocket-Extensions`` header values (RFC 6455 §9.1).

    Args:
        values: the header's values, one per header line.

    Returns:
        ``[(extension_name, [(param_name, param_value_or_None), ...]), ...]``
        in order. Quoted parameter values are unquoted.

    Raises:
        InvalidHandshake: on a syntax error, e.g. ``invalid
            Sec-WebSocket-Extensions header: expected token at position 20:
            'permessage-deflate; =1'``.
    """
    if type(values) is list and len(values) == 1 and type(values[0]) is str:
        # Peers send the same offer or answer on every connection: parse it once.
        value = values[0]
        parsed = _EXTENSION_CACHE.get(value)
        if parsed is None:
            parsed = _parse_list(values, "Sec-WebSocket-Extensions", _parse_extension, at_least_one=True)
            if len(value) <= 256:
                if len(_EXTENSION_CACHE) >= 256:
                    _EXTENSION_CACHE.clear()
                _EXTENSION_CACHE[value] = parsed
        return [(name, list(params)) for name, params in parsed]  # callers may modify theirs
    return _parse_list(values, "Sec-WebSocket-Extensions", _parse_extension, at_least_one=True)


_EXTENSION_CACHE: dict[str, ExtensionHeader] = {}


def serialize_extension_header(extensions: Iterable[tuple[str, Iterable[tuple[str, str | None]]]]) -> str:
    """Serialize extensions for ``Sec-WebSocket-Extensions``.

    Args:
        extensions: ``[(name, [(param, value_or_None), ...]), ...]``.

    Returns:
        For example ``"permessage-deflate; client_max_window_bits, x-foo"``.

    Raises:
        ValueError: if a name, parameter or value is not a token (RFC 6455
            §9.1 requires values to be tokens, even when quoted).
    """
    parts: list[str] = []
    for name, params in extensions:
        if not isinstance(name, str) or _TOKEN_RE.fullmatch(name) is None:
            raise ValueError(f"extension name {name!r} is not a token")
        items = [name]
        for param, value in params:
            if not isinstance(param, str) or _TOKEN_RE.fullmatch(param) is None:
                raise ValueError(f"extension {name!r}: parameter name {param!r} is not a token")
            if value is None:
                items.append(param)
            else:
                if not isinstance(value, str) or _TOKEN_RE.fullmatch(value) is None:
                    raise ValueError(f"extension {name!r}: value {value!r} of parameter {param!r} is not a token")
                items.append(f"{param}={value}")
        parts.append("; ".join(items))
    return ", ".join(parts)


def parse_subprotocol_header(values: Iterable[str]) -> list[str]:
    """Parse ``Sec-WebSocket-Protocol`` header values (RFC 6455 §4.1, §11.3.4: 1#token).

    Raises:
        InvalidHandshake: on a syntax error.
    """
    return _parse_list(values, "Sec-WebSocket-Protocol", _parse_token, at_least_one=True)


def serialize_subprotocol_header(subprotocols: Sequence[str]) -> str:
    """Serialize subprotocols for ``Sec-WebSocket-Protocol`` (``"chat, superchat"``).

    Raises:
        ValueError: if ``subprotocols`` is empty or a name is not a token.
    """
    if isinstance(subprotocols, str):
        raise TypeError("subprotocols must be a sequence of str, not a str")
    if not subprotocols:
        raise ValueError("at least one subprotocol is required")
    for name in subprotocols:
        if not isinstance(name, str) or _TOKEN_RE.fullmatch(name) is None:
            raise ValueError(f"subprotocol {name!r} is not a token")
    return ", ".join(subprotocols)
