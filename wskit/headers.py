"""HTTP headers: a case-insensitive multi-mapping, and the header grammars of
the WebSocket opening handshake.

:class:`Headers` keeps header lines in the order they were added (or
received) and looks names up case-insensitively. Iterating over it yields
``(name, value)`` pairs, one per header line (unlike a ``dict``).

The second half of the module parses and serializes the comma-separated
lists used by the handshake (RFC 7230 §7 ``#rule``, RFC 6455 §9.1 and
§11.3.4): ``Connection``, ``Upgrade``, ``Sec-WebSocket-Extensions`` and
``Sec-WebSocket-Protocol``. Several header lines and one comma-joined line
give the same result. Syntax errors raise
:class:`~wskit.exceptions.InvalidHandshake` naming the header, the position
and the value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NoReturn, TypeVar, Union

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

# RFC 7230 §3.2.6: token = 1*tchar
_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field-value = *( field-content / obs-fold ); only HTAB, VCHAR,
# SP and obs-text (0x80-0xFF) may appear. Anything else in a value is refused.
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_INJECTION_RE = re.compile(r"[\r\n\x00]")
# RFC 7230 §3.2.6: quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
_QUOTED_RE = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_UNESCAPE_RE = re.compile(r"\\(.)")
# RFC 7230 §3.2.3: OWS = *( SP / HTAB )
_OWS_RE = re.compile(r"[ \t]*")


def is_token(value: str) -> bool:
    """Tell whether ``value`` is an RFC 7230 §3.2.6 token."""
    return _TOKEN_RE.fullmatch(value) is not None


class MultipleValuesError(KeyError):
    """``headers[name]`` was used for a header that has several values.

    Use :meth:`Headers.get_all` to read every value.
    """

    def __init__(self, name: str, count: int) -> None:
        super().__init__(name)
        self.name = name
        self.count = count

    def __str__(self) -> str:
        return f"header {self.name!r} has {self.count} values; use headers.get_all({self.name!r}) to read them all"


HeadersLike = Union["Headers", Mapping[str, str], Iterable[tuple[str, str]]]
"""What :class:`Headers` (and ``extra_headers=`` arguments) accept."""


def _check_value(name: str, value: str) -> None:
    """Check a header value for a header whose name is known to be valid."""
    if not isinstance(value, str):
        raise TypeError(f"header name and value must be str, got {type(name).__name__} {type(value).__name__}")
    if _BAD_VALUE_RE.search(value) is not None:
        if _INJECTION_RE.search(value) is not None:
            raise ValueError(f"header value for {name!r} contains CR, LF or NUL (header injection): {value!r}")
        raise ValueError(
            f"header value for {name!r} contains a control character or a character "
            f"outside ISO-8859-1 (RFC 7230 §3.2): {value!r}"
        )


def _check_header(name: str, value: str) -> None:
    if not isinstance(name, str) or not isinstance(value, str):
        raise TypeError(f"header name and value must be str, got {type(name).__name__} {type(value).__name__}")
    if _TOKEN_RE.fullmatch(name) is None:
        raise ValueError(f"invalid header name {name!r}: must be an RFC 7230 token")
    _check_value(name, value)


# The lookup index maps a lowercased name to its value, or to the list of its
# values when the name appears on several lines (rare), so that the common
# single-valued header costs no list.
_Index = dict[str, "str | list[str]"]


def _index_add(index: _Index, key: str, value: str) -> None:
    """Record one more ``value`` for the lower-case ``key`` (a list once there are several)."""
    old = index.get(key)
    if old is None:
        index[key] = value
    elif type(old) is list:
        old.append(value)
    else:
        index[key] = [old, value]  # type: ignore[list-item]


class Headers:
    """A case-insensitive, multi-valued, insertion-ordered map of HTTP headers.

    Construction accepts nothing, another :class:`Headers`, a mapping of
    names to values, or an iterable of ``(name, value)`` pairs. Setting a
    header *adds* a line; it never replaces existing ones (``del`` first to
    replace). Iteration, like :meth:`items`, yields ``(name, value)`` pairs
    in order, one per header line; ``len()`` counts header lines.

    Names must be RFC 7230 tokens and values must not contain control
    characters other than HTAB (CR, LF and NUL would allow header
    injection) nor characters outside ISO-8859-1; violations raise
    :class:`ValueError`.

    Example:
        >>> h = Headers([("Connection", "Upgrade")])
        >>> h["connection"]
        'Upgrade'
        >>> h["Set-Cookie"] = "a=1"; h["Set-Cookie"] = "b=2"
        >>> h.get_all("set-cookie")
        ['a=1', 'b=2']
    """

    # _items holds the header lines; _index (case-insensitive lookups) is
    # built on the first lookup and may be dropped again (_release) to save
    # memory on connections that keep their handshake headers.
    __slots__ = ("_index", "_items")

    def __init__(self, headers: HeadersLike | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: _Index | None = None
        if headers is not None:
            self.extend(headers)

    @classmethod
    def _trusted(cls, items: list[tuple[str, str]]) -> Headers:
        """Build from pairs already validated (by a parser, or built by wskit): no checks, no copy."""
        self = cls.__new__(cls)
        self._items = items
        self._index = None
        return self

    def _lookup(self) -> _Index:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._items:
                _index_add(index, name.lower(), value)
            self._index = index
        return index

    def _release(self) -> None:
        """Drop the lookup index (rebuilt on the next lookup): saves memory on idle connections."""
        self._index = None

    # Adding

    def add(self, name: str, value: str) -> None:
        """Append a header line.

        Raises:
            ValueError: if the name is not a token or the value contains CR,
                LF, NUL, another control character, or a non-ISO-8859-1
                character.
            TypeError: if name or value is not a ``str``.
        """
        _check_header(name, value)
        self._items.append((name, value))
        index = self._index
        if index is not None:
            _index_add(index, name.lower(), value)

    __setitem__ = add

    def extend(self, headers: HeadersLike) -> None:
        """Append every header of ``headers`` (same inputs as the constructor)."""
        if isinstance(headers, Headers):
            pairs: Iterable[tuple[str, str]] = headers._items
        elif isinstance(headers, Mapping):
            pairs = headers.items()
        else:
            pairs = headers
        for pair in pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(f"expected a (name, value) pair, got {pair!r}") from None
            self.add(name, value)

    # Reading

    def __getitem__(self, name: str) -> str:
        value = self._lookup()[name.lower()]
        if type(value) is list:
            raise MultipleValuesError(name, len(value))
        return value  # type: ignore[return-value]

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name``, or ``default`` if absent."""
        value = self._lookup().get(name.lower())
        if value is None:
            return default
        return value[0] if type(value) is list else value  # type: ignore[return-value]

    def get_all(self, name: str) -> list[str]:
        """Return every value of header ``name`` in order (``[]`` if absent)."""
        value = self._lookup().get(name.lower())
        if value is None:
            return []
        return list(value) if type(value) is list else [value]  # type: ignore[list-item]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def items(self) -> list[tuple[str, str]]:
        """Return the ``(name, value)`` pairs in order, one per header line."""
        return list(self._items)

    def keys(self) -> list[str]:
        """Return the distinct header names in order of first appearance (as first spelled)."""
        seen: dict[str, str] = {}
        for name, _ in self._items:
            seen.setdefault(name.lower(), name)
        return list(seen.values())

    # Removing

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        del self._lookup()[key]
        self._items = [item for item in self._items if item[0].lower() != key]

    def clear(self) -> None:
        """Remove every header."""
        self._items = []
        self._index = None

    # Misc

    def copy(self) -> Headers:
        """Return an independent copy."""
        return Headers._trusted(list(self._items))

    def __eq__(self, other: object) -> bool:
        # Same names (case-insensitively) with the same values in the same
        # order per name; the relative order of different names is irrelevant
        # (RFC 7230 §3.2.2).
        if not isinstance(other, Headers):
            return NotImplemented
        return self._lookup() == other._lookup()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def serialize(self) -> bytes:
        """Return the header block: ``Name: value\\r\\n`` lines and the final ``\\r\\n``."""
        return "".join([f"{name}: {value}\r\n" for name, value in self._items] + ["\r\n"]).encode("latin-1")


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
