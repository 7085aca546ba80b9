"""Tests for wskit.headers: the Headers multi-mapping and the handshake header grammars."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit.exceptions import InvalidHandshake, ProtocolError
from wskit.headers import (
    Headers,
    MultipleValuesError,
    is_token,
    parse_extension_header,
    parse_subprotocol_header,
    parse_token_list,
    parse_upgrade_header,
    serialize_extension_header,
    serialize_subprotocol_header,
)
from wskit.http11 import RequestParser

TCHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
tokens = st.text(alphabet=TCHARS, min_size=1, max_size=12)
# Header values as a parser returns them: no control characters, no
# leading/trailing whitespace (OWS is stripped), ISO-8859-1 only.
value_chars = st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f")
values = st.text(alphabet=value_chars, max_size=20).map(lambda v: v.strip(" \t"))


# Headers -------------------------------------------------------------------------


def test_lookup_is_case_insensitive_and_keeps_spelling() -> None:
    h = Headers([("Sec-WebSocket-Key", "abc")])
    assert h["sec-websocket-key"] == "abc"
    assert h["SEC-WEBSOCKET-KEY"] == "abc"
    assert "sec-WEBsocket-key" in h
    assert list(h) == [("Sec-WebSocket-Key", "abc")]


def test_constructors() -> None:
    pairs = [("A", "1"), ("B", "2"), ("a", "3")]
    assert Headers(pairs).items() == pairs
    assert Headers({"A": "1", "B": "2"}).items() == [("A", "1"), ("B", "2")]
    original = Headers(pairs)
    assert Headers(original).items() == pairs
    assert Headers().items() == []
    assert len(Headers()) == 0 and not Headers()


def test_constructor_rejects_non_pairs() -> None:
    with pytest.raises(TypeError, match="pair"):
        Headers(["abc"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="must be str"):
        Headers([("A", 1)])  # type: ignore[list-item]


def test_multiple_values() -> None:
    h = Headers()
    h["Set-Cookie"] = "a=1"
    h.add("set-cookie", "b=2")
    assert h.get_all("SET-COOKIE") == ["a=1", "b=2"]
    assert h.get("set-cookie") == "a=1"
    assert len(h) == 2
    with pytest.raises(MultipleValuesError) as info:
        h["Set-Cookie"]
    assert isinstance(info.value, KeyError)
    assert "get_all" in str(info.value) and "2 values" in str(info.value)


def test_missing_header() -> None:
    h = Headers([("A", "1")])
    with pytest.raises(KeyError):
        h["B"]
    assert h.get("B") is None
    assert h.get("B", "x") == "x"
    assert h.get_all("B") == []
    assert 3 not in h


def test_get_all_returns_a_copy() -> None:
    h = Headers([("A", "1")])
    h.get_all("A").append("2")
    assert h.get_all("A") == ["1"]


def test_delete_removes_every_value() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    del h["A"]
    assert h.items() == [("B", "2")]
    assert "a" not in h
    with pytest.raises(KeyError):
        del h["A"]
    h.clear()
    assert len(h) == 0


def test_iteration_items_keys_order() -> None:
    h = Headers([("Host", "x"), ("Upgrade", "websocket"), ("host", "y")])
    assert list(h) == [("Host", "x"), ("Upgrade", "websocket"), ("host", "y")]
    assert h.items() == list(h)
    assert h.keys() == ["Host", "Upgrade"]


def test_copy_is_independent() -> None:
    h = Headers([("A", "1")])
    c = h.copy()
    c["A"] = "2"
    assert h.get_all("A") == ["1"]
    assert c.get_all("A") == ["1", "2"]


def test_equality() -> None:
    a = Headers([("Host", "x"), ("A", "1"), ("A", "2")])
    assert a == Headers([("host", "x"), ("a", "1"), ("a", "2")])
    assert a == Headers([("A", "1"), ("Host", "x"), ("A", "2")])  # different names may be reordered
    assert a != Headers([("Host", "x"), ("A", "2"), ("A", "1")])  # values of one name may not
    assert a != Headers([("Host", "x"), ("A", "1")])
    assert a != [("Host", "x")]
    with pytest.raises(TypeError):
        hash(a)


def test_repr_and_serialize() -> None:
    h = Headers([("Host", "example.com"), ("Upgrade", "websocket")])
    assert repr(h) == "Headers([('Host', 'example.com'), ('Upgrade', 'websocket')])"
    assert h.serialize() == b"Host: example.com\r\nUpgrade: websocket\r\n\r\n"
    assert Headers().serialize() == b"\r\n"
    assert Headers([("X", "caf\xe9")]).serialize() == b"X: caf\xe9\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "a\x00b"])
def test_header_injection_refused(value: str) -> None:
    h = Headers()
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        h["X"] = value
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Headers([("X", value)])
    assert len(h) == 0


@pytest.mark.parametrize("value", ["a\x01", "\x7f", "\u20ac"])
def test_other_invalid_values_refused(value: str) -> None:
    with pytest.raises(ValueError, match="control character or a character outside ISO-8859-1"):
        Headers([("X", value)])


@pytest.mark.parametrize("name", ["", "A B", "A:", "A\r\nB", "caf\xe9", "A\x00"])
def test_invalid_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid header name"):
        Headers([(name, "v")])


def test_tab_and_obs_text_allowed_in_values() -> None:
    h = Headers([("X", "a\tb \xff")])
    assert h["x"] == "a\tb \xff"


# Names that would make the request carry a body are refused by the parser.
header_names = tokens.filter(lambda n: n.lower() not in ("content-length", "transfer-encoding"))


@given(st.lists(st.tuples(header_names, values), max_size=15))
def test_roundtrip_through_the_request_parser(pairs: list[tuple[str, str]]) -> None:
    headers = Headers(pairs)
    request = RequestParser().feed(b"GET / HTTP/1.1\r\n" + headers.serialize())
    assert request is not None
    assert request.headers == headers
    assert request.headers.items() == pairs


def test_is_token() -> None:
    assert is_token("permessage-deflate")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a,b")


# Token lists ------------------------------------------------------------------------


def test_parse_token_list() -> None:
    assert parse_token_list(["keep-alive, Upgrade"], "Connection") == ["keep-alive", "Upgrade"]
    assert parse_token_list(["Upgrade"], "Connection") == ["Upgrade"]
    assert parse_token_list([], "Connection") == []


def test_parse_token_list_empty_elements_and_ows() -> None:
    # RFC 7230 §7: empty list elements are allowed and ignored.
    assert parse_token_list([" ,a ,, \t b,  ,"], "Connection") == ["a", "b"]
    assert parse_token_list([""], "Connection") == []


def test_parse_token_list_several_lines_equal_joined() -> None:
    assert parse_token_list(["a, b", "c"], "X") == parse_token_list(["a, b, c"], "X") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("value", "what", "pos"),
    [("a b", "expected ','", 2), ("a;b", "expected ','", 1), ("a, =", "expected token", 3), ("é", "expected token", 0)],
)
def test_parse_token_list_errors(value: str, what: str, pos: int) -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_token_list([value], "Connection")
    assert str(info.value) == f"invalid Connection header: {what} at position {pos}: {value!r}"
    assert isinstance(info.value, ProtocolError)


def test_parse_upgrade_header() -> None:
    assert parse_upgrade_header(["HTTP/2.0, websocket", "IRC/6.9"]) == ["HTTP/2.0", "websocket", "IRC/6.9"]
    with pytest.raises(InvalidHandshake, match=r"invalid Upgrade header: expected token at position 5"):
        parse_upgrade_header(["HTTP/"])
    with pytest.raises(InvalidHandshake, match="at least one element"):
        parse_upgrade_header([" , "])


# Sec-WebSocket-Extensions -------------------------------------------------------------


def test_parse_extension_header() -> None:
    value = "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x-webkit-deflate-frame"
    assert parse_extension_header([value]) == [
        ("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("x-webkit-deflate-frame", []),
    ]


def test_parse_extension_header_whitespace_and_quotes() -> None:
    assert parse_extension_header(['foo ;a = "1" ; b=x\t;c']) == [("foo", [("a", "1"), ("b", "x"), ("c", None)])]
    # quoted-pair escapes are unescaped (RFC 7230 §3.2.6)
    assert parse_extension_header(['foo; a="\\1\\0"']) == [("foo", [("a", "10")])]


def test_parse_extension_header_lines_equal_joined() -> None:
    lines = ["permessage-deflate; client_max_window_bits", "permessage-deflate"]
    assert parse_extension_header(lines) == parse_extension_header([", ".join(lines)])


def test_parse_extension_header_error_message() -> None:
    with pytest.raises(InvalidHandshake) as info:
        parse_extension_header(["permessage-deflate; =1"])
    assert str(info.value) == (
        "invalid Sec-WebSocket-Extensions header: expected token at position 20: 'permessage-deflate; =1'"
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ('foo; a="b c"', r"quoted value 'b c' is not a token at position 7"),  # RFC 6455 §9.1
        ('foo; a=""', r"quoted value '' is not a token"),
        ('foo; a="abc', r"unterminated or invalid quoted-string at position 7"),
        ("foo; a=", r"expected token at position 7"),
        ("foo bar", r"expected ',' at position 4"),
        ("", r"expected at least one element at position 0"),
        (", ,", r"expected at least one element"),
        ("foo;", r"expected token at position 4"),
        ("foo; a=b=c", r"expected ',' at position 8"),
    ],
)
def test_parse_extension_header_errors(value: str, match: str) -> None:
    with pytest.raises(InvalidHandshake, match=match) as info:
        parse_extension_header([value])
    assert str(info.value).startswith("invalid Sec-WebSocket-Extensions header: ")


def test_serialize_extension_header() -> None:
    exts = [("permessage-deflate", [("client_max_window_bits", None), ("server_max_window_bits", "10")]), ("x", [])]
    assert serialize_extension_header(exts) == (
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10, x"
    )
    assert serialize_extension_header([]) == ""


@pytest.mark.parametrize(
    "exts",
    [[("a b", [])], [("a", [("b c", None)])], [("a", [("b", "c d")])], [("a", [("b", "")])]],
)
def test_serialize_extension_header_refuses_non_tokens(exts: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    with pytest.raises(ValueError, match="not a token"):
        serialize_extension_header(exts)


extension_lists = st.lists(
    st.tuples(tokens, st.lists(st.tuples(tokens, st.none() | tokens), max_size=4)), min_size=1, max_size=4
)


@given(extension_lists)
def test_extension_header_roundtrip(exts: list[tuple[str, list[tuple[str, str | None]]]]) -> None:
    assert parse_extension_header([serialize_extension_header(exts)]) == exts


@given(extension_lists, st.data())
def test_extension_header_quoting_and_splitting_do_not_matter(
    exts: list[tuple[str, list[tuple[str, str | None]]]], data: st.DataObject
) -> None:
    # Quote some values and spread the extensions over several header lines.
    items = []
    for name, params in exts:
        parts = [name]
        for param, value in params:
            if value is None:
                parts.append(param)
            elif data.draw(st.booleans()):
                escaped = "".join("\\" + c if c in '"\\' or data.draw(st.booleans()) else c for c in value)
                parts.append(f'{param}="{escaped}"')
            else:
                parts.append(f"{param}={value}")
        items.append(" ; ".join(parts))
    cut = data.draw(st.integers(0, len(items)))
    lines = [", ".join(items[:cut]), ", ".join(items[cut:])]
    lines = [line for line in lines if line]
    assert parse_extension_header(lines) == exts


# Sec-WebSocket-Protocol ---------------------------------------------------------------


def test_subprotocols() -> None:
    assert serialize_subprotocol_header(["chat", "superchat"]) == "chat, superchat"
    assert parse_subprotocol_header(["chat, superchat", "v2"]) == ["chat", "superchat", "v2"]
    assert parse_subprotocol_header([]) == []


def test_subprotocol_errors() -> None:
    with pytest.raises(InvalidHandshake, match=r"invalid Sec-WebSocket-Protocol header: expected ',' at position 5"):
        parse_subprotocol_header(["chat superchat"])
    with pytest.raises(ValueError, match="not a token"):
        serialize_subprotocol_header(["a b"])
    with pytest.raises(ValueError, match="at least one"):
        serialize_subprotocol_header([])
    with pytest.raises(TypeError):
        serialize_subprotocol_header("chat")


@given(st.lists(tokens, min_size=1, max_size=6))
def test_subprotocol_roundtrip(names: list[str]) -> None:
    assert parse_subprotocol_header([serialize_subprotocol_header(names)]) == names
