"""The plugin pipeline: PluginManager, hooks as users see them, failures, ``wskit plugins``."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wskit import ClientProtocol, Protocol, ServerProtocol, Side, State, hookimpl
from wskit.__main__ import main
from wskit.events import Request, Response
from wskit.exceptions import InvalidHandshake, PluginError, ProtocolError, WSKitError
from wskit.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory
from wskit.frames import Frame, Opcode
from wskit.headers import Headers
from wskit.plugin import AUTOLOAD_ENV, PluginHookError, PluginManager, default_manager

from helpers import parse_frames


def bare(*plugins: object) -> PluginManager:
    """A manager with only ``plugins``: no built-ins, no entry points."""
    return PluginManager(plugins, builtins=False, entry_points=False)


def handshake(client: ClientProtocol, server: ServerProtocol) -> Request:
    (request,) = server.receive_data(b"".join(client.connect()))
    assert isinstance(request, Request)
    client.receive_data(b"".join(server.accept(request)))
    assert client.state is State.OPEN and server.state is State.OPEN
    return request


# -- the default set, disabling, passing plugins ------------------------------------------------------------


def test_default_set_negotiates_permessage_deflate() -> None:
    pm = PluginManager(entry_points=False)
    assert pm.names() == ["permessage-deflate"]
    client, server = ClientProtocol(plugin_manager=pm), ServerProtocol(plugin_manager=pm)
    request = handshake(client, server)
    assert request.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions] == ["permessage-deflate"]
    frames = parse_frames(client.send_text("hello " * 50), masked=True)
    assert frames[0].rsv1  # compressed on the wire


def test_disabling_the_builtin_turns_compression_off() -> None:
    pm = PluginManager(disable=["permessage-deflate"], entry_points=False)
    assert pm.names() == []
    client, server = ClientProtocol(plugin_manager=pm), ServerProtocol(plugin_manager=pm)
    request = handshake(client, server)
    assert "Sec-WebSocket-Extensions" not in request.headers
    assert client.extensions == [] and server.extensions == []
    frames = parse_frames(client.send_text("hello " * 50), masked=True)
    assert not frames[0].rsv1 and frames[0].data == b"hello " * 50


def test_a_server_without_deflate_answers_a_client_that_offers_it() -> None:
    client = ClientProtocol(plugin_manager=PluginManager(entry_points=False))
    server = ServerProtocol(plugin_manager=PluginManager(disable=["permessage-deflate"], entry_points=False))
    handshake(client, server)
    assert client.extensions == [] and server.extensions == []


def test_builtins_selected_by_name_or_all_off() -> None:
    assert PluginManager(builtins=["permessage-deflate"], entry_points=False).names() == ["permessage-deflate"]
    assert PluginManager(builtins=False, entry_points=False).names() == []


class HeaderPlugin:
    """Adds a request header on the client and a response header on the server."""

    @hookimpl
    def wskit_handshake_request(self, headers: Headers) -> None:
        headers["X-Plugin"] = "client"

    @hookimpl
    def wskit_handshake_response(self, request: Request, headers: Headers) -> None:
        headers["X-Plugin"] = "server saw " + (request.headers.get("X-Plugin") or "nothing")


def test_plugins_argument_adds_to_the_default_set() -> None:
    plugins = [HeaderPlugin()]
    client = ClientProtocol(plugins=plugins)
    server = ServerProtocol(plugins=plugins)
    assert "permessage-deflate" in client.plugin_manager.names()
    assert client.plugin_manager is server.plugin_manager  # built once per list, not per connection
    request = handshake(client, server)
    assert request.headers["X-Plugin"] == "client"
    assert client.response is not None and client.response.headers["X-Plugin"] == "server saw client"
    # The default set: the built-ins, and the plugins this environment installed through entry points.
    default = PluginManager()
    names = client.plugin_manager.names()
    assert names[:-1] == default.names() and len(names) == len(default.names()) + 1
    expected = [f.name for f in default.extension_factories("client")]
    assert [e.name for e in client.extensions] == expected and "permessage-deflate" in expected


class Veto:
    @hookimpl
    def wskit_check_request(self, request: Request) -> Response | None:
        if request.path.startswith("/private"):
            return Response(403, "Forbidden", Headers([("Content-Length", "0")]), b"")
        return None


def test_check_request_vetoes_with_its_response() -> None:
    server = ServerProtocol(plugin_manager=bare(Veto()))
    client = ClientProtocol("ws://localhost/private", plugin_manager=bare())
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(b"".join(client.connect()))
    assert info.value.to_send[0].startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert server.state is State.CLOSED
    ok = ServerProtocol(plugin_manager=bare(Veto()))
    assert ok.receive_data(b"".join(ClientProtocol("ws://localhost/public", plugin_manager=bare()).connect()))


# -- registration and hook resolution ---------------------------------------------------------------------


class Recorder:
    def __init__(self, tag: str, log: list[str]) -> None:
        self.tag, self.log = tag, log

    @hookimpl
    def wskit_frame_sent(self, frame: Frame) -> None:  # a subset of the hook's arguments is fine
        self.log.append(f"{self.tag} {Opcode(frame.opcode).name}")


def test_unimplemented_observers_resolve_to_none() -> None:
    pm = PluginManager(entry_points=False)
    assert (pm.frame_sent, pm.frame_received, pm.state_changed) == (None, None, None)
    log: list[str] = []
    pm.register(Recorder("a", log), name="a")
    assert pm.frame_sent is not None and pm.frame_received is None
    pm.unregister("a")
    assert pm.frame_sent is None


def test_hook_order_last_registered_first_unless_tryfirst() -> None:
    log: list[str] = []

    class Early(Recorder):
        @hookimpl(tryfirst=True)
        def wskit_frame_sent(self, frame: Frame) -> None:
            self.log.append(f"{self.tag} {Opcode(frame.opcode).name}")

    pm = bare(Early("early", log), Recorder("first", log), Recorder("second", log))
    Protocol(Side.SERVER, plugin_manager=pm).send_ping()
    assert log == ["early PING", "second PING", "first PING"]


def test_register_errors_are_plugin_errors() -> None:
    class Unknown:
        @hookimpl
        def wskit_no_such_hook(self) -> None: ...

    pm = bare()
    with pytest.raises(PluginError, match="wskit_no_such_hook"):
        pm.register(Unknown(), name="unknown")
    assert "unknown" not in pm.names()
    with pytest.raises(PluginError, match=r"cannot enable 'nope'.*built-ins: logging, permessage-deflate"):
        PluginManager(enable=["nope"], entry_points=False)
    pm = PluginManager(disable=["blocked"], builtins=False, entry_points=False)
    with pytest.raises(PluginError, match="disabled"):
        pm.register(Recorder("x", []), name="blocked")


def test_default_manager_is_built_once() -> None:
    assert default_manager() is default_manager()
    assert Protocol(Side.SERVER).plugin_manager is default_manager()


def test_a_plugin_options_error_goes_through_unchanged() -> None:
    from wskit.exceptions import ConfigError

    with pytest.raises(ConfigError, match="compression"):
        PluginManager(entry_points=False).extension_factories("client", {"compression": 42})


# -- a plugin that raises fails the connection with 1011, naming the plugin -------------------------------


class Boom:
    """Raises in the hooks named in ``hooks``."""

    def __init__(self, *hooks: str) -> None:
        self.hooks = set(hooks)

    def _maybe(self, hook: str) -> None:
        if hook in self.hooks:
            raise ValueError(f"kaboom in {hook}")

    @hookimpl
    def wskit_frame_sent(self, frame: Frame) -> None:
        self._maybe("wskit_frame_sent")

    @hookimpl
    def wskit_frame_received(self, frame: Frame) -> None:
        self._maybe("wskit_frame_received")

    @hookimpl
    def wskit_state_changed(self, new: State) -> None:
        self._maybe("wskit_state_changed")

    @hookimpl
    def wskit_handshake_request(self, headers: Headers) -> None:
        self._maybe("wskit_handshake_request")

    @hookimpl
    def wskit_check_request(self, request: Request) -> None:
        self._maybe("wskit_check_request")

    @hookimpl
    def wskit_handshake_response(self, headers: Headers) -> None:
        self._maybe("wskit_handshake_response")

    @hookimpl
    def wskit_client_extension_factories(self) -> None:
        self._maybe("wskit_client_extension_factories")


class Quiet:
    """Another plugin implementing the same hooks, so that the culprit must be found."""

    @hookimpl
    def wskit_frame_sent(self, frame: Frame) -> None: ...

    @hookimpl
    def wskit_frame_received(self, frame: Frame) -> None: ...


def boom_manager(*hooks: str) -> PluginManager:
    pm = bare()
    pm.register(Quiet(), name="quiet")
    pm.register(Boom(*hooks), name="boom")
    pm.register(Quiet(), name="quiet-too")
    return pm


def assert_internal_error(exc: ProtocolError, plugin: str) -> None:
    assert exc.close_code == 1011
    assert f"plugin {plugin!r}" in str(exc), str(exc)
    (close,) = parse_frames(exc.to_send, masked=False)
    assert close.opcode == Opcode.CLOSE and close.data[:2] == b"\x03\xf3"  # 1011 on the wire
    # The peer gets a generic reason: what the plugin raised stays on this side.
    assert close.data[2:] == b"internal error"


def test_frame_sent_raising_fails_with_1011_naming_the_plugin() -> None:
    p = Protocol(Side.SERVER, plugin_manager=boom_manager("wskit_frame_sent"))
    with pytest.raises(ProtocolError) as info:
        p.send_text("hello")
    assert_internal_error(info.value, "boom")
    assert "kaboom in wskit_frame_sent" in str(info.value)
    assert isinstance(info.value.__cause__, PluginHookError)
    assert info.value.__cause__.plugin_name == "boom"
    assert p.state is State.CLOSING and p.close_code == 1011


def test_frame_received_raising_fails_with_1011_naming_the_plugin() -> None:
    p = Protocol(Side.SERVER, plugin_manager=boom_manager("wskit_frame_received"))
    peer = Protocol(Side.CLIENT, plugin_manager=bare())
    with pytest.raises(ProtocolError) as info:
        p.receive_data(b"".join(peer.send_text("hello")))
    assert_internal_error(info.value, "boom")
    assert p.close_code == 1011


def test_state_changed_raising_is_logged_naming_the_plugin_and_the_connection_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    p = Protocol(Side.SERVER, plugin_manager=boom_manager("wskit_state_changed"))
    with caplog.at_level(logging.ERROR):
        p.send_close()
    assert p.state is State.CLOSING
    assert any("'boom'" in r.getMessage() and "wskit_state_changed" in r.getMessage() for r in caplog.records)


class BadExtension(Extension):
    name = "x-bad"

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def encode(self, frame: Frame) -> Frame:
        if self.where == "encode" and frame.opcode == Opcode.TEXT:
            raise RuntimeError("encoder bug")
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if self.where == "decode" and frame.opcode == Opcode.TEXT:
            raise RuntimeError("decoder bug")
        return frame


class BadClientFactory(ClientExtensionFactory):
    name = "x-bad"

    def __init__(self, where: str) -> None:
        self.where = where

    def process_response_params(self, params: Any, accepted_extensions: Any) -> Extension:
        return BadExtension(self.where)


class BadServerFactory(ServerExtensionFactory):
    name = "x-bad"

    def process_request_params(self, params: Any, accepted_extensions: Any) -> tuple[list[Any], Extension]:
        return [], BadExtension("")


class BadExtensionPlugin:
    def __init__(self, where: str) -> None:
        self.where = where

    @hookimpl
    def wskit_client_extension_factories(self) -> list[ClientExtensionFactory]:
        return [BadClientFactory(self.where)]

    @hookimpl
    def wskit_server_extension_factories(self) -> list[ServerExtensionFactory]:
        return [BadServerFactory()]


@pytest.mark.parametrize("where", ["encode", "decode"])
def test_extension_raising_fails_with_1011_naming_the_plugin(where: str) -> None:
    pm = bare()
    pm.register(BadExtensionPlugin(where), name="bad-ext")
    client, server = ClientProtocol(plugin_manager=pm), ServerProtocol(plugin_manager=pm)
    handshake(client, server)
    assert [e.name for e in client.extensions] == ["x-bad"]
    with pytest.raises(ProtocolError) as info:
        if where == "encode":
            client.send_text("hello")
        else:
            client.receive_data(b"".join(server.send_text("hello")))
    exc = info.value
    assert exc.close_code == 1011 and client.close_code == 1011
    assert "'bad-ext'" in str(exc) and "x-bad" in str(exc) and f"{where}r bug" in str(exc)


def test_check_request_raising_answers_500() -> None:
    server = ServerProtocol(plugin_manager=boom_manager("wskit_check_request"))
    with pytest.raises(InvalidHandshake) as info:
        server.receive_data(b"".join(ClientProtocol(plugin_manager=bare()).connect()))
    assert "'boom'" in str(info.value) and "wskit_check_request" in str(info.value)
    assert info.value.to_send and info.value.to_send[0].startswith(b"HTTP/1.1 500 ")
    assert b"kaboom" not in info.value.to_send[0]  # the plugin's message stays on the server
    assert server.state is State.CLOSED


def test_handshake_response_raising_answers_500() -> None:
    server = ServerProtocol(plugin_manager=boom_manager("wskit_handshake_response"))
    (request,) = server.receive_data(b"".join(ClientProtocol(plugin_manager=bare()).connect()))
    with pytest.raises(InvalidHandshake) as info:
        server.accept(request)  # type: ignore[arg-type]
    assert "'boom'" in str(info.value)
    assert info.value.to_send and info.value.to_send[0].startswith(b"HTTP/1.1 500 ")
    assert server.state is State.CLOSED


def test_handshake_request_raising_on_the_client_names_the_plugin() -> None:
    client = ClientProtocol(plugin_manager=boom_manager("wskit_handshake_request"))
    with pytest.raises(WSKitError, match=r"plugin 'boom' raised ValueError in wskit_handshake_request: kaboom"):
        client.connect()


def test_extension_factories_raising_names_the_plugin() -> None:
    with pytest.raises(PluginHookError, match="plugin 'boom' raised ValueError in wskit_client_extension"):
        ClientProtocol(plugin_manager=boom_manager("wskit_client_extension_factories"))


class FrameWrapper:
    @hookimpl(wrapper=True)
    def wskit_frame_received(self) -> Iterator[None]:
        return (yield)


@pytest.mark.parametrize("others", [(), (Quiet(),), (FrameWrapper(),)], ids=["alone", "with-another", "with-a-wrapper"])
def test_a_protocol_error_raised_on_purpose_goes_through(others: tuple[object, ...]) -> None:
    class Strict:
        @hookimpl
        def wskit_frame_received(self, frame: Frame) -> None:
            if frame.opcode == Opcode.BINARY:
                raise ProtocolError("no binary here", close_code=1003)

    p = Protocol(Side.SERVER, plugin_manager=bare(Strict(), *others))
    with pytest.raises(ProtocolError, match="no binary here") as info:
        p.receive_data(b"".join(Protocol(Side.CLIENT, plugin_manager=bare()).send_binary(b"x")))
    assert info.value.close_code == 1003


def test_culprit_is_found_through_pluggy_with_a_wrapper() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def wskit_frame_sent(self) -> Iterator[None]:
            return (yield)

    pm = boom_manager("wskit_frame_sent")
    pm.register(Wrapper(), name="wrapper")
    with pytest.raises(ProtocolError) as info:
        Protocol(Side.SERVER, plugin_manager=pm).send_text("x")
    assert_internal_error(info.value, "boom")


def test_culprit_of_an_exception_names_the_plugin_or_none() -> None:
    pm = boom_manager("wskit_frame_sent")
    with pytest.raises(ValueError) as info:
        pm.pm.hook.wskit_frame_sent(protocol=None, frame=Frame(Opcode.PING, b""))  # pluggy's own caller: no naming
    assert pm.culprit("wskit_frame_sent", info.value) == "boom"
    # Already named by the manager; a hook nobody implements; no traceback to look in.
    assert pm.culprit("wskit_frame_sent", PluginHookError("x", plugin_name="quiet", hook_name="h")) == "quiet"
    assert pm.culprit("wskit_no_such_hook", ValueError("x")) is None
    assert pm.culprit("wskit_frame_sent", ValueError("x")) is None  # three plugins implement it
    alone = bare()
    alone.register(Quiet(), name="quiet")
    assert alone.culprit("wskit_frame_sent", ValueError("x")) == "quiet"  # the only one


def test_describe_plugin_name_and_the_hook_relay() -> None:
    recorder, stranger = Recorder("a", []), Recorder("b", [])
    pm = bare(recorder)
    name = pm.plugin_name(recorder)
    assert pm.describe() == [(name, ["wskit_frame_sent"])]
    assert [(i.name, i.origin) for i in pm.info()] == [(name, "code")]
    assert pm.plugin_name(stranger) == repr(stranger)
    assert [impl.plugin_name for impl in pm.hook.wskit_frame_sent.get_hookimpls()] == [name]


def test_extension_factories_side_is_checked() -> None:
    with pytest.raises(ValueError, match="side must be 'client' or 'server', got 'sideways'"):
        bare().extension_factories("sideways")


def test_extension_factories_through_a_wrapper_still_negotiate() -> None:
    seen: list[int] = []

    class Counting:
        @hookimpl(wrapper=True)
        def wskit_client_extension_factories(self) -> Iterator[None]:
            result = yield
            seen.append(len(result))
            return result

    pm = PluginManager([Counting()], entry_points=False)
    client, server = ClientProtocol(plugin_manager=pm), ServerProtocol(plugin_manager=PluginManager(entry_points=False))
    handshake(client, server)
    assert [e.name for e in client.extensions] == ["permessage-deflate"]
    assert seen and seen[0] == 1  # the built-in's one list of factories went through the wrapper


def test_extension_owner_never_raises_when_a_plugin_does() -> None:
    pm = boom_manager("wskit_client_extension_factories")
    assert pm.extension_owner(Frame(Opcode.TEXT, b"")) is None  # asked on a failure path: no second failure


# -- entry points -----------------------------------------------------------------------------------------


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution ``fake-plugin`` with an entry point ``fake`` in group ``wskit``."""
    (tmp_path / "fake_wskit_plugin.py").write_text(textwrap.dedent("""
        from wskit import hookimpl

        @hookimpl
        def wskit_handshake_request(headers):
            headers["X-Fake"] = "1"
    """))
    info = tmp_path / "fake_plugin-1.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.2\n")
    (info / "entry_points.txt").write_text("[wskit]\nfake = fake_wskit_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    return tmp_path


def others() -> list[str]:
    """Entry-point plugins this environment has installed besides the test's ``fake``."""
    return [ep.name for ep in importlib.metadata.entry_points(group="wskit") if ep.name != "fake"]


def test_entry_point_plugins_are_loaded(fake_distribution: Path) -> None:
    pm = PluginManager(disable=others())
    assert pm.names() == ["permessage-deflate", "fake"]
    info = {i.name: i for i in pm.info()}
    assert info["fake"].origin == "entry point" and info["fake"].source == "fake-plugin 1.2"
    assert info["permessage-deflate"].origin == "built-in"
    client = ClientProtocol(plugin_manager=pm)
    client.connect()
    assert client.request is not None and client.request["X-Fake"] == "1"


def test_entry_points_can_be_turned_off_or_disabled(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "fake" not in PluginManager(entry_points=False).names()
    assert "fake" not in PluginManager(disable=["fake"]).names()
    monkeypatch.setenv(AUTOLOAD_ENV, "1")
    assert "fake" not in PluginManager().names()


def test_a_broken_entry_point_is_a_plugin_error(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "fake_wskit_plugin", raising=False)
    (fake_distribution / "fake_wskit_plugin.py").write_text("raise ImportError('missing dependency zzz')\n")
    with pytest.raises(PluginError, match=r"entry-point group failed.*missing dependency zzz"):
        PluginManager()


# -- wskit plugins ---------------------------------------------------------------------------------------


def test_cli_lists_plugins_origin_and_hooks(capsys: pytest.CaptureFixture[str], fake_distribution: Path) -> None:
    assert main(["plugins", "--enable", "logging", *(f"--disable={name}" for name in others())]) == 0
    out = capsys.readouterr().out
    assert "3 active plugins (entry-point autoload: on)" in out
    assert "permessage-deflate  built-in: wskit.plugins.deflate" in out
    assert "logging             built-in: wskit.plugins.framelog" in out
    assert "fake                entry point: fake-plugin 1.2" in out
    assert "wskit_frame_sent" in out and "wskit_handshake_request" in out
    assert "wskit_client_extension_factories: permessage-deflate" in out


def test_cli_json_disable_and_no_entry_points(capsys: pytest.CaptureFixture[str], fake_distribution: Path) -> None:
    assert main(["plugins", "--json", "--disable", "permessage-deflate", "--no-entry-points"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["plugins"] == [] and data["disabled"] == ["permessage-deflate"]
    assert data["optional_not_enabled"] == ["logging"] and data["entry_points"] is False


def test_cli_reads_a_configuration(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "ws.yaml"
    path.write_text("plugins:\n  enable: [logging]\n  entry_points: false\n")
    assert main(["plugins", "--config", str(path), "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)["plugins"]]
    assert names == ["permessage-deflate", "logging"]


def test_cli_errors_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--enable", "nope"]) == 1
    assert "no built-in plugin named 'nope'" in capsys.readouterr().err


# -- one rule for plugin names: the YAML loader and the command line ----------------------------------------


def test_check_plugin_names_is_the_rule_the_yaml_loader_applies() -> None:
    from wskit.config import loads
    from wskit.exceptions import ConfigError
    from wskit.plugin import check_plugin_names, known_plugin_names

    check_plugin_names(["permessage-deflate", "logging"])
    check_plugin_names(["logging"], builtin=True)
    with pytest.raises(ConfigError) as info:
        check_plugin_names(["zstd", "permessage-deflat"])
    known = ", ".join(known_plugin_names())
    assert info.value.errors == [
        f"no installed plugin named 'zstd' (installed: {known})",
        f"no installed plugin named 'permessage-deflat'; did you mean 'permessage-deflate'? (installed: {known})",
    ]
    with pytest.raises(ConfigError) as yaml_info:
        loads("plugins:\n  disable: [zstd, permessage-deflat]\n", "ws.yaml")
    assert yaml_info.value.errors == [f"ws.yaml:2: plugins.disable[{i}]: {message}"
                                      for i, message in enumerate(info.value.errors)]
    with pytest.raises(ConfigError, match=r"no built-in plugin named 'loging'; did you mean 'logging'\?"):
        check_plugin_names(["loging"], builtin=True)


def test_import_wskit_loads_no_difflib() -> None:
    code = "import sys, wskit, wskit.plugin; assert 'difflib' not in sys.modules, 'difflib'; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


# -- docs/plugins.md: "A plugin's configuration" runs as written ----------------------------------------------


def test_plugins_page_configuration_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import re

    page = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    section = page[page.index("## A plugin's configuration"):page.index("## Shipping a plugin on PyPI")]
    plugin_block, use_block = re.findall(r"```python\n(.*?)```", section, re.S)
    # Installed as the page says: a module, and an entry point in the `wskit` group naming the plugin object.
    (tmp_path / "greeting_plugin.py").write_text(plugin_block + "\nplugin = GreetingPlugin()\n")
    info = tmp_path / "greeting_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: greeting-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[wskit]\ngreeting = greeting_plugin:plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "greeting_plugin", raising=False)
    import greeting_plugin

    exec(compile(use_block, "docs/plugins.md", "exec"), dict(vars(greeting_plugin)))
    expected = [line.removeprefix("# ") for line in use_block.splitlines() if line.startswith("# ")]
    printed = capsys.readouterr().out.splitlines()
    assert printed == ["['bonjour']", *expected]
    assert expected[0].startswith("bad.yaml:2: greeting.word:")
