"""Tests for wskit.config: loading, validation messages, consumer options, docs, CLI."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from wskit import ClientProtocol, ServerProtocol
from wskit.__main__ import main as cli_main
from wskit.config import (
    KINDS,
    SCHEMA,
    Config,
    _catalog,
    accepts_config,
    from_dict,
    load,
    loads,
    merge_options,
    reference_markdown,
)
from wskit.events import Request, Response, TextMessage
from wskit.exceptions import ConfigError, InvalidHandshake, PayloadTooBig, PluginError
from wskit.extensions.permessage_deflate import PerMessageDeflate
from wskit.http11 import HTTPLimits
from wskit.plugin import PluginManager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def errors_of(text: str, source: str = "test.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text), source)
    return info.value.errors


def deflate(items: Any) -> list[Any]:
    """The permessage-deflate factories or extensions among ``items``; third-party plugins installed in
    the environment may add their own (a configuration's plugin manager loads entry points)."""
    return [item for item in items if item.name == "permessage-deflate"]


def handshake(client: ClientProtocol, server: ServerProtocol) -> tuple[Request, Response]:
    """Run the opening handshake in memory; return the request and the response."""
    events = server.receive_data(b"".join(client.connect()))
    assert len(events) == 1 and isinstance(events[0], Request)
    request = events[0]
    reply = b"".join(server.accept(request))
    response = client.receive_data(reply)[0]
    assert isinstance(response, Response)
    return request, response


# -- loading -----------------------------------------------------------------------


def test_examples_load_and_give_every_consumer_options() -> None:
    server = load(EXAMPLES / "server.yaml")
    client = load(EXAMPLES / "client.yaml")
    assert server.source.endswith("server.yaml")
    assert server.subprotocols == ("chat", "superchat")
    assert server.origins == ("https://example.com", None)
    assert server.compression.server_max_window_bits == 12
    assert client.client.uri == "ws://127.0.0.1:8765/chat"
    for kind in KINDS:
        config = client if "client" in kind else server
        assert isinstance(merge_options(config, kind, {}), dict)


def test_examples_drive_a_real_handshake() -> None:
    server_cfg = load(EXAMPLES / "server.yaml")
    client_cfg = load(EXAMPLES / "client.yaml")
    client = ClientProtocol(**merge_options(client_cfg, "client_protocol", {}))
    server = ServerProtocol(**merge_options(server_cfg, "server_protocol", {}))
    request, _ = handshake(client, server)
    assert request.headers["Origin"] == "https://example.com"
    assert request.path == "/chat"
    assert client.subprotocol == server.subprotocol == "chat"
    assert [e.name for e in deflate(client.extensions)] == ["permessage-deflate"]


def test_empty_file_gives_defaults() -> None:
    config = loads("")
    for key in SCHEMA:
        default = key.default
        assert config.get(key.path) == default
    assert merge_options(config, "server_protocol", {}) == {}
    assert merge_options(config, "sync_client", {}) == {}


def test_comment_only_and_empty_section() -> None:
    config = loads("# nothing\ntls:\n")
    assert config.tls.certfile is None


def test_load_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"^nope\.yaml: cannot read the configuration: No such file"):
        load("nope.yaml")


def test_load_non_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"max_size: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(path)


# Values that differ from every default, one per key.
SAMPLES: dict[str, Any] = {
    "max_size": 1000,
    "max_fragment_size": 512,
    "max_queue": 4,
    "write_limit": 0,
    "subprotocols": ["chat", "v2.json"],
    "origin": "https://a.example",
    "origins": ["https://a.example", None],
    "handshake.max_line": 100,
    "handshake.max_headers": 10,
    "handshake.max_header_bytes": 1000,
    "handshake.max_body": 10,
    "compression.enabled": False,
    "compression.server_no_context_takeover": True,
    "compression.client_no_context_takeover": True,
    "compression.server_max_window_bits": 9,
    "compression.client_max_window_bits": 10,
    "compression.level": 1,
    "compression.mem_level": 8,
    "compression.min_size": 0,
    "plugins.enable": ["logging"],
    "plugins.disable": ["permessage-deflate"],
    "plugins.entry_points": False,
    "timeouts.open": 1.5,
    "timeouts.close": None,
    "timeouts.ping_interval": 3,
    "timeouts.ping_timeout": None,
    "server.host": "::1",
    "server.port": 0,
    "server.unix": "/run/ws.sock",
    "server.reuse_port": True,
    "client.uri": "wss://example.com/x",
    "tls.certfile": None,
    "tls.keyfile": None,
    "tls.cafile": None,
}


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        section, _, name = path.rpartition(".")
        (out.setdefault(section, {}) if section else out)[name] = value
    return out


def test_samples_cover_the_schema() -> None:
    builtin_sections = _catalog(entry_points=False).sections.values()
    assert set(SAMPLES) == {k.path for k in SCHEMA} | {k.path for s in builtin_sections for k in s.keys}


@pytest.mark.parametrize("path", sorted(SAMPLES))
def test_every_key_round_trips(path: str) -> None:
    config = loads(yaml.safe_dump(nest({path: SAMPLES[path]})))
    expected = SAMPLES[path]
    value = config.get(path)
    assert (list(value) if isinstance(value, tuple) else value) == expected
    assert config.is_set(path)
    section, _, name = path.rpartition(".")
    view = config.as_dict()[section][name] if section else config.as_dict()[path]
    assert view == expected
    # Attribute access gives the same value.
    via_attr = getattr(getattr(config, section), name) if section else getattr(config, path)
    assert via_attr == value


def test_whole_file_round_trips_through_check_output() -> None:
    config = from_dict(nest(SAMPLES))
    again = loads(yaml.safe_dump(config.as_dict()))
    assert again.as_dict() == config.as_dict()


def test_compression_shorthand() -> None:
    assert loads("compression: false").compression.enabled is False
    assert loads("compression: true").compression.enabled is True
    manager = merge_options(loads("compression: false"), "client_protocol", {})["plugin_manager"]
    assert manager.options["compression"]["enabled"] is False
    assert "permessage-deflate" not in [f.name for f in manager.extension_factories("client")]


def test_config_is_read_only() -> None:
    config = loads("max_size: 5")
    with pytest.raises(AttributeError, match="read-only"):
        config.max_size = 6  # type: ignore[misc]
    with pytest.raises(AttributeError, match="read-only"):
        config.compression.level = 1
    with pytest.raises(AttributeError, match="no key 'nope'"):
        _ = config.nope
    with pytest.raises(AttributeError, match="section 'compression' has no key 'nope'"):
        _ = config.compression.nope
    assert config.compression["level"] == 6
    assert "level" in list(config.compression)
    assert config == loads("max_size: 5") and config != loads("max_size: 6")


def test_a_recursive_alias_is_an_error_not_a_hang() -> None:
    assert errors_of("max_size: 1\nmax_queue: &a [*a]\n") == [
        "test.yaml:2: max_queue[0]: recursive YAML alias",
        "test.yaml:2: max_queue: expected an integer >= 1, got a list",
    ]


def test_config_and_sections_compare_hash_and_show() -> None:
    config = loads("max_size: 5\ncompression: {level: 1}", "a.yaml")
    assert repr(config) == "<Config from a.yaml: 2 keys set>"
    assert hash(config) == hash(loads("max_size: 5\ncompression: {level: 1}"))
    section = config.compression
    assert section == loads("compression: {level: 1}").compression and section != config.timeouts
    assert hash(section) == hash(loads("").compression)
    assert repr(section).startswith("Section('compression', {") and "'level': 1" in repr(section)
    for obj in (config, section):  # private names are never keys (copy and pickle probe them)
        with pytest.raises(AttributeError):
            _ = obj._missing


def test_relative_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    (tmp_path / "c.yaml").write_text("tls: {cafile: ca.pem}\nserver: {unix: ws.sock}\n")
    config = load(tmp_path / "c.yaml")
    assert config.tls.cafile == str(tmp_path / "ca.pem")
    assert config.server.unix == str(tmp_path / "ws.sock")


# -- error messages ------------------------------------------------------------------


def test_misspelled_key_suggests_the_nearest() -> None:
    assert errors_of("max_sise: 10\n") == ["test.yaml:1: max_sise: unknown key; did you mean 'max_size'?"]


def test_misspelled_nested_key() -> None:
    assert errors_of("compression:\n  enabled: true\n  levle: 3\n") == [
        "test.yaml:3: compression.levle: unknown key; did you mean 'level'?"
    ]


def test_key_in_the_wrong_section_points_to_its_place() -> None:
    assert errors_of("level: 3\n") == ["test.yaml:1: level: unknown key; did you mean 'compression.level'?"]


def test_unknown_key_without_suggestion_lists_the_valid_ones() -> None:
    (message,) = errors_of("tls:\n  zzz: 1\n")
    assert message == "test.yaml:2: tls.zzz: unknown key (valid keys: certfile, keyfile, cafile)"


def test_out_of_range() -> None:
    assert errors_of("""\
        max_size: 1
        compression:
          client_max_window_bits: 20
        """, "server.yaml") == [
        "server.yaml:3: compression.client_max_window_bits: expected an integer 8..15 or null, got 20"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_size: big", "test.yaml:1: max_size: expected an integer >= 0 or null, got 'big'"),
        ("max_size: -1", "test.yaml:1: max_size: expected an integer >= 0 or null, got -1"),
        ("max_size: 1.5", "test.yaml:1: max_size: expected an integer >= 0 or null, got 1.5"),
        ("max_size: true", "test.yaml:1: max_size: expected an integer >= 0 or null, got true"),
        ("max_queue: null", "test.yaml:1: max_queue: expected an integer >= 1, got null"),
        ("max_queue: [1]", "test.yaml:1: max_queue: expected an integer >= 1, got a list"),
        ("compression: {level: 10}", "test.yaml:1: compression.level: expected an integer -1..9, got 10"),
        ("compression: {enabled: 'yes'}", "test.yaml:1: compression.enabled: expected true or false, got 'yes'"),
        ("compression: 3", "test.yaml:1: compression: expected a mapping or true/false, got 3"),
        ("tls: [a]", "test.yaml:1: tls: expected a mapping, got a list"),
        ("timeouts: {open: 0}", "test.yaml:1: timeouts.open: expected a number > 0 or null, got 0"),
        ("timeouts: {close: .nan}", "test.yaml:1: timeouts.close: expected a number > 0 or null, got nan"),
        ("server: {port: 70000}", "test.yaml:1: server.port: expected an integer 0..65535, got 70000"),
        ("origin: 5", "test.yaml:1: origin: expected a string or null, got 5"),
        ("origin: 'a b'",
         "test.yaml:1: origin: an origin cannot contain whitespace or control characters, got 'a b'"),
        ("origins: https://a", "test.yaml:1: origins: expected a list of origins (a string, or null for requests "
                               "without Origin) or null, got 'https://a'"),
        ("origins: [1]", "test.yaml:1: origins[0]: expected an origin string or null, got 1"),
        ("subprotocols: chat", "test.yaml:1: subprotocols: expected a list of tokens (RFC 7230 §3.2.6), "
                               "got 'chat'"),
        ("subprotocols: [chat, 'a b']", "test.yaml:1: subprotocols[1]: 'a b' is not a valid token "
                                        "(RFC 7230 §3.2.6: letters, digits, !#$%&'*+-.^_`|~)"),
        ("subprotocols:\n  - chat\n  - {a: 1}", "test.yaml:3: subprotocols[1]: expected a string, got a mapping"),
        ("client: {uri: 'http://x/'}", "test.yaml:1: client.uri: invalid WebSocket URI 'http://x/': "),
        ("server: {unix: ''}", "test.yaml:1: server.unix: expected a path or null, got ''"),
        ("tls: {cafile: /nonexistent/ca.pem}", "test.yaml:1: tls.cafile: file not found: /nonexistent/ca.pem"),
        ("max_size: 1\nmax_size: 2", "test.yaml:2: max_size: duplicate key (first set on line 1)"),
        ("1: x", "test.yaml:1: <top>: keys must be strings, got 1"),
        ("- a\n- b", "test.yaml:1: <top>: expected a mapping of configuration keys, got a list"),
        ("when: 2024-01-01", "test.yaml:1: when: unknown key"),
        ("max_size: 2024-13-45", "test.yaml:1: max_size: '2024-13-45' is not a valid !!timestamp value"),
        ("max_size: !!bool maybe", "test.yaml:1: max_size: 'maybe' is not a valid !!bool value"),
        ("max_size: !!int 0x", "test.yaml:1: max_size: '0x' is not a valid !!int value"),
        ("compression: [1]", "test.yaml:1: compression: expected a mapping or true/false, got a list"),
        ("client: {uri: 5}", "test.yaml:1: client.uri: expected a ws:// or wss:// URI or null, got 5"),
        ("tls: {cafile: ''}", "test.yaml:1: tls.cafile: expected the path of an existing file or null, got ''"),
        ("origins: ['a b']",
         "test.yaml:1: origins[0]: an origin cannot contain whitespace or control characters, got 'a b'"),
        ("plugins: {disable: [nope]}", "test.yaml:1: plugins.disable[0]: no installed plugin named 'nope'"),
    ],
)
def test_error_messages(text: str, message: str) -> None:
    (error,) = errors_of(text)
    assert error.startswith(message), error


def test_python_tags_are_refused_with_their_line() -> None:
    errors = errors_of("max_size: 5\nmax_queue: !!python/object/apply:os.system [echo hi]\n")
    assert errors == [
        "test.yaml:2: max_queue: YAML tag !!python/object/apply:os.system is not allowed (plain values only)"
    ]


def test_custom_tags_are_refused() -> None:
    assert errors_of("origin: !env HOME\n") == [
        "test.yaml:1: origin: YAML tag !env is not allowed (plain values only)"
    ]


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("max_size: [1\n", "test.yaml:2: invalid YAML: expected ',' or ']'"),
        ("a: b: c\n", "test.yaml:1: invalid YAML: mapping values are not allowed here"),
        ("a: 1\n---\nb: 2\n", "test.yaml:2: invalid YAML: expected a single document"),
        ("a: *nope\n", "test.yaml:1: invalid YAML: found undefined alias 'nope'"),
        ("a:\n\t- b\n", "test.yaml:2: invalid YAML: found character '\\t'"),
    ],
)
def test_yaml_syntax_errors(text: str, prefix: str) -> None:
    (error,) = errors_of(text)
    assert error.startswith(prefix), error


def test_aliases_are_followed() -> None:
    config = loads("subprotocols: &p [chat]\nhandshake: {max_line: &n 100, max_headers: *n}\n")
    assert config.handshake.max_headers == 100


def test_alias_bomb_is_cheap() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 9)]
    errors = errors_of("\n".join(lines))
    assert len(errors) == 9 and all("unknown key" in e for e in errors)


def test_every_error_is_reported_in_line_order() -> None:
    errors = errors_of("""\
        max_sise: 10
        compression:
          level: 11
        plugins:
          enable: [zstd]
        timeouts: {open: -1}
        """)
    assert [e.split(":")[1] for e in errors] == ["1", "3", "5", "6"]
    assert errors[2].startswith("test.yaml:5: plugins.enable[0]: no built-in plugin named 'zstd' (built-in: ")
    assert "permessage-deflate" in errors[2]


def test_plugin_misspelling_suggests() -> None:
    (error,) = errors_of("plugins: {disable: [permessage-deflat]}")
    assert error.startswith("test.yaml:1: plugins.disable[0]: no installed plugin named 'permessage-deflat'; "
                            "did you mean 'permessage-deflate'?")


def test_keyfile_without_certfile(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert errors_of(f"tls:\n  keyfile: {key}\n") == ["test.yaml:2: tls.keyfile: a keyfile needs a certfile"]


def test_from_dict_errors_have_no_line() -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({"max_size": "x", "compression": {"levle": 1}, 3: 4})  # type: ignore[dict-item]
    assert info.value.errors == [
        "<dict>: max_size: expected an integer >= 0 or null, got 'x'",
        "<dict>: <top>: keys must be strings, got 3",
        "<dict>: compression.levle: unknown key; did you mean 'level'?",  # plugin sections come last
    ]


def test_config_error_is_one_exception_with_all_messages() -> None:
    with pytest.raises(ConfigError) as info:
        loads("max_size: x\nmax_queue: y\n", "f.yaml")
    assert str(info.value) == "\n".join(info.value.errors)
    assert isinstance(info.value, ValueError)


@given(st.integers(min_value=-100, max_value=100))
def test_level_range_is_exact(level: int) -> None:
    text = f"compression: {{level: {level}}}"
    if -1 <= level <= 9:
        assert loads(text).compression.level == level
    else:
        with pytest.raises(ConfigError, match=f"expected an integer -1..9, got {level}$"):
            loads(text)


@given(st.text(min_size=1, max_size=30))
def test_arbitrary_scalar_never_crashes(value: str) -> None:
    text = yaml.safe_dump({"origin": value})
    try:
        config = loads(text)
    except ConfigError as exc:
        assert all(e.startswith("<string>:") for e in exc.errors)
    else:
        assert config.origin == value


# -- consumers: options and behaviour --------------------------------------------------


def test_merge_options_protocol_kinds() -> None:
    config = from_dict({
        "max_size": 10, "subprotocols": ["chat"], "origin": "https://o", "origins": ["https://o"],
        "handshake": {"max_line": 100}, "timeouts": {"open": 3}, "max_queue": 2, "client": {"uri": "ws://h/"},
    })
    client = merge_options(config, "client_protocol", {})
    assert client == {"max_size": 10, "subprotocols": ["chat"], "origin": "https://o", "uri": "ws://h/",
                      "limits": HTTPLimits(max_line=100)}
    server = merge_options(config, "server_protocol", {})
    assert server == {"max_size": 10, "subprotocols": ["chat"], "origins": ["https://o"],
                      "limits": HTTPLimits(max_line=100)}


def test_merge_options_io_kinds() -> None:
    config = from_dict({
        "max_queue": 2, "write_limit": 100, "timeouts": {"open": 3, "close": None, "ping_interval": 1,
                                                         "ping_timeout": 2},
        "server": {"host": "127.0.0.1", "port": 0, "reuse_port": True}, "client": {"uri": "ws://h/"},
    })
    common = {"max_queue": 2, "write_limit": 100, "open_timeout": 3, "close_timeout": None, "ping_interval": 1,
              "ping_timeout": 2}
    for kind in ("asyncio_server", "sync_server"):
        assert merge_options(config, kind, {}) == {**common, "host": "127.0.0.1", "port": 0, "reuse_port": True}
    for kind in ("asyncio_client", "sync_client"):
        assert merge_options(config, kind, {}) == {**common, "uri": "ws://h/"}


def test_explicit_arguments_override_the_file() -> None:
    config = from_dict({"max_size": 10, "compression": False, "handshake": {"max_line": 100}})
    limits = HTTPLimits(max_line=5)
    merged = merge_options(config, "server_protocol", {"max_size": None, "extensions": ["x"], "limits": limits})
    assert merged == {"max_size": None, "extensions": ["x"], "limits": limits,
                      "plugin_manager": config.plugin_manager()}
    # `compression=` given in code turns the file's compression section on or off.
    on = merge_options(config, "asyncio_server", {"compression": "deflate"})["plugin_manager"]
    assert [f.name for f in deflate(on.extension_factories("server"))] == ["permessage-deflate"]
    assert on is not config.plugin_manager() and on.options["compression"]["enabled"] is True
    off = merge_options(loads("compression: {level: 1}"), "asyncio_server", {"compression": None})["plugin_manager"]
    assert off.options["compression"] == {**off.options["compression"], "enabled": False, "level": 1}


def test_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown consumer kind 'tcp'"):
        merge_options(loads(""), "tcp", {})
    with pytest.raises(ValueError, match="unknown consumer kind"):
        accepts_config("tcp")


def test_max_size_from_the_file_fails_with_1009() -> None:
    config = loads("max_size: 100\ncompression: false\n")
    client = ClientProtocol(**merge_options(config, "client_protocol", {}))
    server = ServerProtocol(**merge_options(config, "server_protocol", {}))
    handshake(client, server)
    assert server.receive_data(b"".join(client.send_text("x" * 100))) == [TextMessage("x" * 100)]
    with pytest.raises(PayloadTooBig):
        server.receive_data(b"".join(client.send_text("x" * 101)))
    assert server.close_code == 1009


def test_compression_settings_are_negotiated() -> None:
    client_cfg = loads("""\
        compression:
          client_no_context_takeover: true
          server_max_window_bits: 10
          client_max_window_bits: 11
        """.replace("        ", ""))
    server_cfg = loads("compression: {server_no_context_takeover: true, client_max_window_bits: 9}\n")
    client = ClientProtocol(**merge_options(client_cfg, "client_protocol", {}))
    server = ServerProtocol(**merge_options(server_cfg, "server_protocol", {}))
    request, response = handshake(client, server)
    offer = request.headers["Sec-WebSocket-Extensions"]
    assert "server_max_window_bits=10" in offer and "client_max_window_bits=11" in offer
    assert "client_no_context_takeover" in offer
    answer = response.headers["Sec-WebSocket-Extensions"]
    for param in ("server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits=10",
                  "client_max_window_bits=9"):
        assert param in answer, answer
    (ext,) = deflate(client.extensions)
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.local_max_window_bits, ext.remote_max_window_bits) == (9, 10)
    assert ext.local_no_context_takeover and ext.remote_no_context_takeover
    # And the negotiated extension works both ways.
    assert server.receive_data(b"".join(client.send_text("hello " * 50))) == [TextMessage("hello " * 50)]
    assert client.receive_data(b"".join(server.send_text("bye " * 50))) == [TextMessage("bye " * 50)]


def test_compression_level_and_min_size_reach_the_extension() -> None:
    config = loads("compression: {level: 1, mem_level: 8, min_size: 0}")
    for side, kind in (("client", "client_protocol"), ("server", "server_protocol")):
        manager = merge_options(config, kind, {})["plugin_manager"]
        (factory,) = [f for f in manager.extension_factories(side) if f.name == "permessage-deflate"]
        assert (factory.level, factory.mem_level, factory.min_size) == (1, 8, 0)


def test_compression_disabled_offers_nothing() -> None:
    client = ClientProtocol(**merge_options(loads("compression: false"), "client_protocol", {}))
    server = ServerProtocol()
    request, _ = handshake(client, server)
    assert "permessage-deflate" not in (request.headers.get("Sec-WebSocket-Extensions") or "")
    assert deflate(client.extensions) == []


def test_handshake_limits_reject_a_long_header() -> None:
    config = loads("handshake: {max_line: 200}")
    server = ServerProtocol(**merge_options(config, "server_protocol", {}))
    client = ClientProtocol(extra_headers={"X-Long": "a" * 300})
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(b"".join(client.connect()))
    assert info.value.status == 431
    assert b" 431 " in b"".join(info.value.to_send)
    # The same request passes the default limits.
    assert isinstance(ServerProtocol().receive_data(b"".join(ClientProtocol(
        extra_headers={"X-Long": "a" * 300}).connect()))[0], Request)


def test_handshake_max_headers() -> None:
    config = loads("handshake: {max_headers: 5}")
    server = ServerProtocol(**merge_options(config, "server_protocol", {}))
    client = ClientProtocol(extra_headers=[(f"X-{i}", "v") for i in range(10)])
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(b"".join(client.connect()))
    assert info.value.status == 431


def test_origins_from_the_file_reject_others() -> None:
    config = loads("origins: [https://good.example]")
    server = ServerProtocol(**merge_options(config, "server_protocol", {}))
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(b"".join(ClientProtocol(origin="https://evil.example").connect()))
    assert info.value.status == 403


def test_plugins_section_builds_one_manager_per_config() -> None:
    config = loads("plugins: {disable: [permessage-deflate], entry_points: false}")
    manager = merge_options(config, "server_protocol", {})["plugin_manager"]
    assert isinstance(manager, PluginManager)
    assert manager is merge_options(config, "sync_client", {})["plugin_manager"]
    assert manager.pm.get_plugin("permessage-deflate") is None
    # permessage-deflate disabled: no extension is offered by default.
    client = ClientProtocol(**merge_options(config, "client_protocol", {}))
    request, _ = handshake(client, ServerProtocol())
    assert request.headers.get("Sec-WebSocket-Extensions") is None


def test_plugins_enable_an_optional_builtin() -> None:
    pytest.importorskip("wskit.plugins.framelog")
    config = loads("plugins: {enable: [logging]}")
    manager = config.plugin_manager()
    assert "logging" in manager.names() and "permessage-deflate" in manager.names()


# -- TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=localhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_contexts(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    cert, key = certificate
    config = from_dict({"tls": {"certfile": str(cert), "keyfile": str(key), "cafile": str(cert)}})
    server_ctx = merge_options(config, "asyncio_server", {})["ssl"]
    assert isinstance(server_ctx, ssl.SSLContext)
    assert server_ctx.verify_mode == ssl.CERT_REQUIRED
    assert server_ctx is merge_options(config, "sync_server", {})["ssl"]  # built once
    client_ctx = merge_options(config, "sync_client", {})["ssl"]
    assert client_ctx.check_hostname and client_ctx is not server_ctx
    assert "ssl" not in merge_options(config, "server_protocol", {})  # sans-I/O has no TLS


def test_tls_server_needs_a_certificate(certificate: tuple[Path, Path]) -> None:
    config = from_dict({"tls": {"cafile": str(certificate[0])}})
    assert isinstance(merge_options(config, "sync_client", {})["ssl"], ssl.SSLContext)
    with pytest.raises(ConfigError, match=r"^<dict>: tls\.certfile: a server needs a certificate$"):
        merge_options(config, "sync_server", {})


def test_tls_bad_pem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    config = from_dict({"tls": {"certfile": str(bad)}})
    with pytest.raises(ConfigError, match=r"^<dict>: tls.certfile: cannot load: "):
        merge_options(config, "asyncio_server", {})


# -- accepts_config ------------------------------------------------------------------


class ConfiguredClient(ClientProtocol):
    @accepts_config("client_protocol")
    def __init__(self, uri: str = "ws://localhost/", **kwargs: Any) -> None:
        super().__init__(uri, **kwargs)


class ConfiguredServer(ServerProtocol):
    @accepts_config("server_protocol")
    def __init__(self, *, config: Config | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)


def test_accepts_config_on_protocols() -> None:
    config = loads("max_size: 100\nsubprotocols: [chat]\nclient: {uri: 'ws://example.com/room'}\n"
                   "compression: false\n")
    client = ConfiguredClient(config=config)
    server = ConfiguredServer(config=config)
    request, _ = handshake(client, server)
    assert request.path == "/room" and client.subprotocol == "chat"
    with pytest.raises(PayloadTooBig):
        server.receive_data(b"".join(client.send_binary(b"x" * 101)))


def test_accepts_config_explicit_and_positional_override() -> None:
    config = loads("max_size: 100\nclient: {uri: 'ws://example.com/room'}\n")
    client = ConfiguredClient("ws://other.example/x", config=config, max_size=None)
    assert client.wsuri.path == "/x"
    server = ConfiguredServer(config=config, max_size=None)
    client.connect()
    assert server._max_size is None and client._max_size is None
    assert ConfiguredServer()._max_size == 2**20  # without config: the class defaults


def test_accepts_config_rejects_other_objects() -> None:
    with pytest.raises(TypeError, match=r"config must be a wskit\.config\.Config, got dict"):
        ConfiguredServer(config={"max_size": 1})  # type: ignore[arg-type]


def test_accepts_config_keeps_the_name() -> None:
    assert ConfiguredClient.__init__.__name__ == "__init__"


# -- docs and CLI ----------------------------------------------------------------------


def test_reference_page_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), "regenerate: wskit config docs -o docs/configuration.md"


def test_reference_page_lists_every_key() -> None:
    page = reference_markdown()
    for key in SCHEMA:
        assert f"| `{key.path}` |" in page


def test_reference_example_is_a_valid_config() -> None:
    page = reference_markdown()
    example = page.split("## Example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert loads(example).as_dict() == loads("").as_dict()


def test_cli_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["config", "check", str(EXAMPLES / "server.yaml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok\n")
    effective = yaml.safe_load(out[3:])
    assert effective == load(EXAMPLES / "server.yaml").as_dict()


def test_cli_check_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("max_size: 1\ncompression:\n  client_max_window_bits: 20\nmax_sise: 1\n")
    assert cli_main(["config", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{path}:3: compression.client_max_window_bits: expected an integer 8..15 or null, got 20",
        f"{path}:4: max_sise: unknown key; did you mean 'max_size'?",
    ]


def test_cli_check_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["config", "check", "/nonexistent.yaml"]) == 1
    assert "/nonexistent.yaml: cannot read the configuration" in capsys.readouterr().err


def test_cli_docs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.md"
    assert cli_main(["config", "docs", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == reference_markdown()
    assert cli_main(["config"]) == 2


def test_cli_in_a_subprocess() -> None:
    bad = subprocess.run([sys.executable, "-m", "wskit", "config", "check", str(EXAMPLES / "nope.yaml")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    good = subprocess.run([sys.executable, "-m", "wskit", "config", "check", str(EXAMPLES / "client.yaml")],
                          capture_output=True, text=True, cwd=ROOT)
    assert good.returncode == 0 and good.stdout.startswith("ok\n")


def test_protocol_classes_take_config_and_explicit_arguments_win() -> None:
    from wskit import ClientProtocol, ServerProtocol
    from wskit.config import loads

    cfg = loads("max_size: 10\nsubprotocols: [chat]\ncompression: false\n", source="inline.yaml")
    server = ServerProtocol(config=cfg)
    client = ClientProtocol("ws://example.com/", config=cfg)
    assert server.max_size == 10 and client.max_size == 10
    assert ServerProtocol(config=cfg, max_size=99).max_size == 99
    (request,) = server.receive_data(b"".join(client.connect()))
    assert request.headers.get("Sec-WebSocket-Protocol") == "chat"
    assert "permessage-deflate" not in (request.headers.get("Sec-WebSocket-Extensions") or "")  # compression: false
    client.receive_data(b"".join(server.accept(request)))
    assert client.subprotocol == server.subprotocol == "chat"


def test_disabling_permessage_deflate_and_configuring_it_is_refused() -> None:
    errors = errors_of("""\
        plugins:
          disable: [permessage-deflate]
        compression:
          enabled: true
          level: 9
        """)
    assert errors == ["test.yaml:3: compression: configures the plugin 'permessage-deflate', which plugins.disable "
                      "(line 2) turns off: remove the section, or set 'compression: false'"]
    (error,) = errors_of("plugins: {disable: [permessage-deflate]}\ncompression: {level: 9}\n")
    assert error.startswith("test.yaml:2: compression: configures the plugin 'permessage-deflate'")
    # Turning it off twice is consistent: accepted, and nothing offers compression.
    for text in ("plugins: {disable: [permessage-deflate]}\ncompression: false\n",
                 "plugins: {disable: [permessage-deflate]}\ncompression: {enabled: false}\n"):
        config = loads(text)
        assert "compression" not in config.as_dict()
        client = ClientProtocol(**merge_options(config, "client_protocol", {}))
        request, _ = handshake(client, ServerProtocol())
        assert "permessage-deflate" not in (request.headers.get("Sec-WebSocket-Extensions") or "")


def test_config_and_io_modules_special_case_no_plugin() -> None:
    for module in ("config.py", "_io.py"):
        text = (ROOT / "wskit" / module).read_text(encoding="utf-8")
        assert "compression" not in text and "PerMessageDeflate" not in text, module


# -- plugins from entry points that declare (or break) configuration sections ---------------------------


@pytest.fixture
def entry_point_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Install a distribution whose ``wskit`` entry points are the modules given: ``{name: source}``."""
    from wskit.plugin import AUTOLOAD_ENV

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)

    def install(modules: dict[str, str]) -> None:
        lines = []
        for name, source in modules.items():
            module = f"cfgtest_{tmp_path.name}_{name}".replace("-", "_")
            (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
            lines.append(f"{name} = {module}")
        info = tmp_path / "cfgtest-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cfgtest\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text("[wskit]\n" + "\n".join(lines) + "\n")

    return install


SECTION_PLUGIN = """
    from wskit import hookimpl

    @hookimpl
    def wskit_add_config(schema):
        section = schema.section("shout", "Shouting.")
        section.add("loud", "bool", False, "Shout.")
        section.add("times", "int", 1, "How often (any integer).")

    @hookimpl
    def wskit_configure(config):
        if config.section("shout")["loud"]:
            raise RuntimeError("too loud")
"""


def test_a_section_from_an_entry_point_plugin(entry_point_plugins: Any) -> None:
    entry_point_plugins({"shouter": SECTION_PLUGIN, "broken": "raise ImportError('no such dependency')\n"})
    assert loads("shout: {loud: false}").shout.loud is False  # the broken plugin is left out of the schema
    with pytest.raises(PluginError, match=r"plugin 'shouter' raised RuntimeError in wskit_configure: too loud"):
        loads("shout: {loud: true}")
    assert errors_of("shout:\n  times: often\n") == ["test.yaml:2: shout.times: expected an integer, got 'often'"]


def test_declaring_a_section_checks_names_and_kinds() -> None:
    from wskit.configschema import ConfigSchema

    schema = ConfigSchema("mine", reserved={"max_size"})
    for name, message in [("Bad-Name", "a section name is lowercase letters, digits and _"),
                          ("max_size", "section 'max_size' is already a configuration key")]:
        with pytest.raises(PluginError, match=f"plugin 'mine': .*{message}"):
            schema.section(name, "")
    section = schema.section("mine", "")
    with pytest.raises(PluginError, match="plugin 'mine': section 'mine' is already a configuration key"):
        schema.section("mine", "")
    section.add("ok", "str", "", "")
    for name, kind, message in [("Bad", "str", "a key name is lowercase letters, digits and _"),
                                ("x", "complex", "unknown kind 'complex' \\(kinds: "),
                                ("ok", "str", "declared twice")]:
        with pytest.raises(PluginError, match=f"plugin 'mine': mine.{name}: {message}"):
            section.add(name, kind, "", "")


def test_a_plugin_failing_in_add_config_is_named(entry_point_plugins: Any) -> None:
    entry_point_plugins({"faulty": """
        from wskit import hookimpl

        @hookimpl
        def wskit_add_config(schema):
            raise KeyError("oops")
    """})
    with pytest.raises(PluginError, match=r"plugin 'faulty' raised KeyError in wskit_add_config: 'oops'"):
        loads("max_size: 1")


def test_two_plugins_declaring_one_section_are_refused(entry_point_plugins: Any) -> None:
    entry_point_plugins({"one": SECTION_PLUGIN, "two": SECTION_PLUGIN})
    with pytest.raises(PluginError, match=r"plugins '(one|two)' and '(one|two)' both declare the configuration "
                                          r"section 'shout'"):
        loads("max_size: 1")
