"""The example third-party plugin in plugins/wskit-prefix, and the seed's custom extension as a plugin.

Most tests import the plugin from its source tree. One test installs it the
way a user would (``pip install``) into a throw-away venv that sees the
project's packages, and checks that wskit finds it through its entry point:
the project's own environment is never changed.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import site
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import wskit
import wskit.asyncio as wa
from wskit import ClientProtocol, Protocol, ServerProtocol, Side, State, TextMessage, hookimpl
from wskit.config import loads, merge_options
from wskit.events import BinaryMessage, Close, Ping
from wskit.exceptions import ConfigError, NegotiationError, ProtocolError
from wskit.extensions.base import ClientExtensionFactory, Extension, ServerExtensionFactory
from wskit.frames import Frame
from wskit.plugin import AUTOLOAD_ENV, PluginManager

from helpers import build_frame, parse_frames

PLUGIN_DIR = Path(__file__).resolve().parent.parent / "plugins" / "wskit-prefix"


@pytest.fixture(scope="module")
def prefix() -> Iterator[ModuleType]:
    """The ``wskit_prefix`` module, imported from plugins/wskit-prefix/src."""
    src = str(PLUGIN_DIR / "src")
    sys.path.insert(0, src)
    try:
        import wskit_prefix

        yield wskit_prefix
    finally:
        sys.path.remove(src)


@pytest.fixture
def installed(prefix: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The plugin as pip installs it, seen by this process: a distribution whose entry point
    ``wskit-prefix`` (group ``wskit``) names the ``wskit_prefix`` module."""
    info = tmp_path / "wskit_prefix-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wskit-prefix\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[wskit]\nwskit-prefix = wskit_prefix\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(AUTOLOAD_ENV, raising=False)
    return prefix


def pair(client_pm: PluginManager, server_pm: PluginManager | None = None) -> tuple[ClientProtocol, ServerProtocol]:
    client = ClientProtocol(plugin_manager=client_pm)
    server = ServerProtocol(plugin_manager=server_pm or client_pm)
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def only(*plugins: object, deflate: bool = False) -> PluginManager:
    return PluginManager(plugins, builtins=deflate, entry_points=False)


# -- the x-wskit-prefix extension --------------------------------------------------------------------------


def test_negotiated_by_name_and_prefix_on_the_wire(prefix: ModuleType) -> None:
    client, server = pair(only(prefix))
    assert client.request is not None
    assert client.request["Sec-WebSocket-Extensions"] == "x-wskit-prefix; label=wskit"
    assert [e.name for e in client.extensions] == [e.name for e in server.extensions] == ["x-wskit-prefix"]
    out = client.send_text("héllo")
    (frame,) = parse_frames(out, masked=True)
    assert frame.data == "[wskit] héllo".encode() and not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert server.receive_data(b"".join(out)) == [TextMessage("héllo")]
    out = server.send_text("back")
    assert parse_frames(out, masked=False)[0].data == b"[wskit] back"
    assert client.receive_data(b"".join(out)) == [TextMessage("back")]


def test_binary_control_and_fragments(prefix: ModuleType) -> None:
    client = ClientProtocol(plugin_manager=only(prefix), max_fragment_size=3)
    server = ServerProtocol(plugin_manager=only(prefix))
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    out = client.send_text("fragmented") + client.send_binary(b"[wskit] raw") + client.send_ping(b"p")
    frames = parse_frames(out, masked=True)
    assert frames[0].data == b"[wskit] fra"  # the prefix goes on the first frame only
    assert server.receive_data(b"".join(out)) == [TextMessage("fragmented"), BinaryMessage(b"[wskit] raw"),
                                                  Ping(b"p")]
    assert client.receive_data(b"".join(server.send_close(1000, "ok"))) == [Close(1000, "ok")]


def test_stacks_with_permessage_deflate(prefix: ModuleType) -> None:
    client, server = pair(only(prefix, deflate=True))
    assert [e.name for e in client.extensions] == ["x-wskit-prefix", "permessage-deflate"]
    for message in ["", "x", "hello " * 1000]:
        assert server.receive_data(b"".join(client.send_text(message))) == [TextMessage(message)]
        assert client.receive_data(b"".join(server.send_text(message))) == [TextMessage(message)]


def test_a_peer_without_the_plugin_ignores_the_offer(prefix: ModuleType) -> None:
    client, server = pair(only(prefix), only())
    assert client.extensions == [] and server.extensions == []
    assert server.receive_data(b"".join(client.send_text("plain"))) == [TextMessage("plain")]


def test_labels(prefix: ModuleType) -> None:
    client = ClientProtocol(plugin_manager=only(), extensions=[prefix.ClientPrefixFactory("MyExt")])
    server = ServerProtocol(plugin_manager=only(), extensions=[prefix.ServerPrefixFactory()])
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert parse_frames(client.send_text("x"), masked=True)[0].data == b"[MyExt] x"
    # A server that accepts only other labels declines: no extension.
    strict = ServerProtocol(plugin_manager=only(), extensions=[prefix.ServerPrefixFactory(["other"])])
    (request,) = strict.receive_data(b"".join(ClientProtocol(
        plugin_manager=only(), extensions=[prefix.ClientPrefixFactory("MyExt")]).connect()))
    strict.accept(request)
    assert strict.extensions == []
    with pytest.raises(ConfigError, match="label"):
        prefix.ClientPrefixFactory("has space")


def test_client_rejects_an_answer_with_another_label(prefix: ModuleType) -> None:
    factory = prefix.ClientPrefixFactory("mine")
    with pytest.raises(NegotiationError, match="label='theirs'"):
        factory.process_response_params([("label", "theirs")], [])
    with pytest.raises(NegotiationError, match="unknown parameter 'x'"):
        factory.process_response_params([("x", None)], [])
    assert factory.process_response_params([], []).label == "mine"


def test_a_text_message_without_the_prefix_fails_with_1002(prefix: ModuleType) -> None:
    server = Protocol(Side.SERVER, plugin_manager=only(), extensions=[prefix.PrefixExtension()])
    with pytest.raises(ProtocolError, match=r"does not start with b'\[wskit\] '") as info:
        server.receive_data(build_frame(1, b"no prefix", mask=b"abcd"))
    assert info.value.close_code == 1002


def test_claims_no_rsv_bit(prefix: ModuleType) -> None:
    assert prefix.PrefixExtension.rsv_mask == 0
    server = Protocol(Side.SERVER, plugin_manager=only(), extensions=[prefix.PrefixExtension()])
    with pytest.raises(ProtocolError) as info:
        server.receive_data(build_frame(1, b"[wskit] x", rsv2=True, mask=b"abcd"))
    assert info.value.close_code == 1002


def test_options_turn_it_off_or_change_the_label(prefix: ModuleType) -> None:
    pm = only(prefix)
    assert pm.extension_factories("client", {"prefix": False}) == []
    (factory,) = pm.extension_factories("client", {"prefix": {"label": "abc"}})
    assert factory.get_request_params() == [("label", "abc")]
    with pytest.raises(ConfigError, match="prefix"):
        pm.extension_factories("server", {"prefix": 3})


def test_an_extension_failure_names_the_plugin(prefix: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any, frame: Frame) -> Frame:
        raise RuntimeError("bug")

    monkeypatch.setattr(prefix.PrefixExtension, "encode", broken)  # before negotiation binds it
    client, _ = pair(only(prefix))
    assert client.plugin_manager.extension_owner(client.extensions[0]) == "wskit_prefix"
    with pytest.raises(ProtocolError, match="x-wskit-prefix") as info:
        client.send_text("x")
    assert info.value.close_code == 1011 and client.close_code == 1011


# -- its section of the YAML configuration --------------------------------------------------------------


def prefix_extension(extensions: Sequence[Extension]) -> Any:
    found = [e for e in extensions if e.name == "x-wskit-prefix"]
    return found[0] if found else None


def test_a_yaml_section_configures_a_real_connection(installed: ModuleType) -> None:
    client_config = loads("prefix:\n  label: chat\n", "client.yaml")
    server_config = loads("prefix:\n  labels: [chat, news]\n", "server.yaml")
    assert server_config.prefix.labels == ("chat", "news") and client_config.prefix.label == "chat"
    received: list[Any] = []

    async def handler(ws: Any) -> None:
        received.append((await ws.recv(), prefix_extension(ws.protocol.extensions)))
        await ws.send("back")

    async def main() -> tuple[Any, str, bytes]:
        async with wa.serve(handler, "127.0.0.1", 0, config=server_config) as server:
            port = server.sockets[0].getsockname()[1]
            async with wa.connect(f"ws://127.0.0.1:{port}/", config=client_config) as ws:
                # What goes on the wire for a text message: the configured prefix.
                wire = b"".join(Protocol(Side.SERVER, plugin_manager=only(),
                                         extensions=list(ws.protocol.extensions)).send_text("x"))
                await ws.send("hello")
                return prefix_extension(ws.protocol.extensions), await ws.recv(), wire

    client_ext, answer, wire = asyncio.run(main())
    assert isinstance(client_ext, installed.PrefixExtension) and client_ext.label == "chat"
    assert wire.endswith(b"[chat] x")
    message, server_ext = received[0]
    assert message == "hello" and answer == "back"
    assert isinstance(server_ext, installed.PrefixExtension) and server_ext.label == "chat"


def test_a_server_section_declines_other_labels(installed: ModuleType) -> None:
    client = ClientProtocol(**merge_options(loads("prefix: {label: chat}"), "client_protocol", {}))
    server = ServerProtocol(**merge_options(loads("prefix: {labels: [news]}"), "server_protocol", {}))
    (request,) = server.receive_data(b"".join(client.connect()))
    assert "x-wskit-prefix; label=chat" in request.headers["Sec-WebSocket-Extensions"]
    client.receive_data(b"".join(server.accept(request)))
    assert prefix_extension(client.extensions) is None and prefix_extension(server.extensions) is None
    # `prefix: false` turns it off: not even offered.
    off = ClientProtocol(**merge_options(loads("prefix: false"), "client_protocol", {}))
    off.connect()
    assert off.request is not None and "x-wskit-prefix" not in (off.request.get("Sec-WebSocket-Extensions") or "")


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        loads(textwrap.dedent(text), "ws.yaml")
    return info.value.errors


def test_section_errors_name_file_line_and_key(installed: ModuleType) -> None:
    assert errors_of("""\
        max_size: 10
        prefix:
          label: has space
          lables: [a]
          enabled: 1
        """) == [
        "ws.yaml:3: prefix.label: a label is 1-32 characters among A-Z a-z 0-9 _ . -, got 'has space'",
        "ws.yaml:4: prefix.lables: unknown key; did you mean 'labels'?",
        "ws.yaml:5: prefix.enabled: expected true or false, got 1",
    ]
    assert errors_of("prefx: {label: a}\n") == ["ws.yaml:1: prefx: unknown key; did you mean 'prefix'?"]
    assert errors_of("prefix:\n  labels: []\n") == [
        "ws.yaml:2: prefix.labels: an empty list accepts no label: set 'enabled: false' to turn the extension off"]
    assert errors_of("prefix: 3\n") == ["ws.yaml:1: prefix: expected a mapping or true/false, got 3"]
    # wskit_configure checks the section as a whole.
    assert errors_of("prefix:\n  labels: [a, b]\n  label: c\n") == [
        "ws.yaml:3: prefix.label: 'c' is not among prefix.labels (a, b): a client and a server configured by "
        "this file would not agree"]


def test_configuring_a_disabled_plugin_is_refused(installed: ModuleType) -> None:
    assert errors_of("plugins:\n  disable: [wskit-prefix]\nprefix:\n  label: chat\n") == [
        "ws.yaml:3: prefix: configures the plugin 'wskit-prefix', which plugins.disable (line 2) turns off: "
        "remove the section, or set 'prefix: false'"]
    assert errors_of("plugins: {entry_points: false}\nprefix: {label: chat}\n") == [
        "ws.yaml:2: prefix: configures the plugin 'wskit-prefix', which plugins.entry_points (line 1) turns off "
        "(false: no entry-point plugins): remove the section, or set 'prefix: false'"]
    config = loads("plugins: {disable: [wskit-prefix]}\nprefix: false\n")
    assert "prefix" not in config.as_dict() and "wskit-prefix" not in config.plugin_manager().names()


def test_without_the_plugin_its_section_is_unknown(prefix: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUTOLOAD_ENV, "1")  # no entry-point plugin is loaded: nobody declares `prefix`
    (error,) = errors_of("prefix: {label: chat}\n")
    assert error.startswith("ws.yaml:1: prefix: unknown key")


def test_plugins_argument_and_entry_point_register_it_once(installed: ModuleType) -> None:
    manager = PluginManager([installed])  # also installed: its entry point loaded the same module
    assert manager.names().count("wskit-prefix") == 1 and installed in [p for _, p in manager.pm.list_name_plugin()]
    client = ClientProtocol(plugins=[installed])
    client.connect()
    assert client.request is not None
    assert client.request["Sec-WebSocket-Extensions"].count("x-wskit-prefix") == 1
    # Disabled by name, the object passed in code still registers: the explicit object wins.
    assert "wskit_prefix" in PluginManager([installed], disable=["wskit-prefix"]).names()


# -- the seed's SimpleExtension, as written, wrapped in a plugin ------------------------------------------


class SimpleExtension(Extension):
    """Example custom extension."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def encode(self, frame):  # type: ignore[no-untyped-def]
        """Process outgoing frames."""
        # Simple example: add prefix to text frames
        if frame.opcode == 1:  # TEXT frame
            modified_data = f"[{self.name}] ".encode() + frame.data
            return frame._replace(data=modified_data)
        return frame

    def decode(self, frame):  # type: ignore[no-untyped-def,override]
        """Process incoming frames."""
        # Simple example: remove prefix from text frames
        if frame.opcode == 1:  # TEXT frame
            prefix = f"[{self.name}] ".encode()
            if frame.data.startswith(prefix):
                modified_data = frame.data[len(prefix):]
                return frame._replace(data=modified_data)
        return frame


class SimpleClientFactory(ClientExtensionFactory):
    def __init__(self, name: str) -> None:
        self.name = name

    def process_response_params(self, params: Sequence[Any], accepted_extensions: Sequence[Extension]) -> Extension:
        return SimpleExtension(self.name)


class SimpleServerFactory(ServerExtensionFactory):
    def __init__(self, name: str) -> None:
        self.name = name

    def process_request_params(self, params: Sequence[Any],
                               accepted_extensions: Sequence[Extension]) -> tuple[list[Any], Extension]:
        return [], SimpleExtension(self.name)


class SimplePlugin:
    @hookimpl
    def wskit_client_extension_factories(self) -> list[ClientExtensionFactory]:
        return [SimpleClientFactory("MyExt")]

    @hookimpl
    def wskit_server_extension_factories(self) -> list[ServerExtensionFactory]:
        return [SimpleServerFactory("MyExt")]


def test_seed_extension_on_bare_protocols() -> None:
    client = Protocol(Side.CLIENT, extensions=[SimpleExtension("MyExt")])
    server = Protocol(Side.SERVER, extensions=[SimpleExtension("MyExt")])
    out = client.send_text("hello")
    assert parse_frames(out, masked=True)[0].data == b"[MyExt] hello"
    assert server.receive_data(b"".join(out)) == [TextMessage("hello")]


def test_seed_extension_wrapped_in_a_plugin() -> None:
    plugin = SimplePlugin()
    client, server = pair(only(plugin))
    assert client.request is not None and client.request["Sec-WebSocket-Extensions"] == "MyExt"
    assert [e.name for e in client.extensions] == ["MyExt"]
    out = client.send_text("hello")
    assert parse_frames(out, masked=True)[0].data == b"[MyExt] hello"
    assert server.receive_data(b"".join(out)) == [TextMessage("hello")]
    assert client.receive_data(b"".join(server.send_text("hi"))) == [TextMessage("hi")]
    # Through plugins=[...] on top of the default set (permessage-deflate) too.
    client = ClientProtocol(plugins=[plugin])
    server = ServerProtocol(plugins=[plugin])
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert {e.name for e in client.extensions} >= {"MyExt"}
    assert server.receive_data(b"".join(client.send_text("both"))) == [TextMessage("both")]


# -- installed for real, found through its entry point ----------------------------------------------------


def _can_build_without_isolation() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return False
    return major >= 71 or (major >= 64 and importlib.util.find_spec("wheel") is not None)


CHECK = textwrap.dedent("""
    import wskit_prefix
    from wskit import ClientProtocol, ServerProtocol, TextMessage
    from wskit.plugin import PluginManager

    pm = PluginManager(disable=["permessage-deflate"])  # the default set, minus deflate
    assert pm.names() == ["wskit-prefix"], pm.names()
    client, server = ClientProtocol(plugin_manager=pm), ServerProtocol(plugin_manager=pm)
    (request,) = server.receive_data(b"".join(client.connect()))
    assert request.headers["Sec-WebSocket-Extensions"] == "x-wskit-prefix; label=wskit"
    client.receive_data(b"".join(server.accept(request)))
    assert [e.name for e in server.extensions] == ["x-wskit-prefix"]
    wire = b"".join(server.send_text("hello"))
    assert wire == b"\\x81\\x0d[wskit] hello", wire
    assert client.receive_data(wire) == [TextMessage("hello")]

    # With the default set (deflate too), both are negotiated and messages round-trip.
    client, server = ClientProtocol(), ServerProtocol()
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert [e.name for e in client.extensions] == ["x-wskit-prefix", "permessage-deflate"]
    assert server.receive_data(b"".join(client.send_text("hi " * 100))) == [TextMessage("hi " * 100)]
    assert "wskit-prefix" not in PluginManager(disable=["wskit-prefix"]).names()

    # Its section of the YAML configuration reaches the extension it negotiates.
    from wskit.config import loads, merge_options
    client = ClientProtocol(**merge_options(loads("prefix: {label: chat}"), "client_protocol", {}))
    server = ServerProtocol(**merge_options(loads("prefix: {labels: [chat]}"), "server_protocol", {}))
    (request,) = server.receive_data(b"".join(client.connect()))
    client.receive_data(b"".join(server.accept(request)))
    assert [e.label for e in server.extensions if e.name == "x-wskit-prefix"] == ["chat"]
    assert b"[chat] hi" in b"".join(server.send_text("hi"))
    try:
        loads("prefix:\\n  label: 'a b'\\n", "ws.yaml")
    except Exception as exc:
        assert str(exc).startswith("ws.yaml:2: prefix.label: a label is"), exc
    else:
        raise AssertionError("no error")
    print("ok")
""")


def test_installed_plugin_is_found_through_its_entry_point(tmp_path: Path) -> None:
    if not _can_build_without_isolation():
        pytest.skip("building the example plugin offline needs setuptools>=71, or wheel (make venv installs it)")
    before = PluginManager().names()  # wskit-prefix is there if this environment has it installed too
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True, timeout=30).stdout.strip()
    # Let the new venv see this environment's packages (wskit, pluggy, pip,
    # setuptools, ...) without installing anything into this environment.
    dirs = [*site.getsitepackages(), str(Path(wskit.__file__).resolve().parent.parent)]
    (Path(purelib) / "_wskit_test_env.pth").write_text(
        "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs) + "\n")
    src = tmp_path / "wskit-prefix"  # build from a copy: setuptools writes build/ and egg-info/
    subprocess.run(["cp", "-r", str(PLUGIN_DIR), str(src)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in (AUTOLOAD_ENV, "PYTHONPATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                              "--no-index", "--quiet", str(src)],
                             capture_output=True, text=True, env=env, timeout=120)
    assert install.returncode == 0, install.stdout + install.stderr

    listing = subprocess.run([str(python), "-m", "wskit", "plugins"], capture_output=True, text=True, env=env,
                             timeout=60, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "wskit-prefix        entry point: wskit-prefix 0.1.0" in listing.stdout, listing.stdout
    assert "wskit_client_extension_factories: wskit-prefix, permessage-deflate" in listing.stdout

    check = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, env=env, timeout=60,
                           cwd=tmp_path)
    assert check.returncode == 0 and check.stdout.strip() == "ok", check.stdout + check.stderr
    # This process (the project's environment) was not changed: the same plugins as before.
    assert PluginManager().names() == before
