"""The :class:`Headers` multi-mapping of HTTP header lines.

Import it from :mod:`wskit.headers`, its public home. It lives in this
module of its own because the events (:class:`~wskit.events.Request`,
:class:`~wskit.events.Response`) hold headers while the header grammars of
:mod:`wskit.headers` raise :class:`~wskit.exceptions.InvalidHandshake`,
which carries events: the container sits below both, and imports nothing
from wskit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Union

__all__ = ["Headers", "HeadersLike", "MultipleValuesError", "is_token"]

# RFC 7230 §3.2.6: token = 1*tchar
_TOKEN_RE = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field-value = *( field-content / obs-fold ); only HTAB, VCHAR,
# SP and obs-text (0x80-0xFF) may appear. Anything else in a value is refused.
_BAD_VALUE_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]|[^\x00-\xff]")
_INJECTION_RE = re.compile(r"[\r\n\x00]")


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
        raise TypeError(f"header value for {name!r} must be str, got {type(value).__name__}")
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
