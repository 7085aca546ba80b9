"""Tests for the codecs at their edges: an empty read while a text frame is streamed, masking
without the C accelerator, and the deflate plugin's settings that turn compression off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wskit import Protocol, Side, TextMessage
from wskit.exceptions import ConfigError, ProtocolError
from wskit.extensions.base import ClientExtensionFactory
from wskit.frames import Opcode
from wskit.mask import py_apply_mask
from wskit.plugin import PluginManager
from wskit.plugins.deflate import io_extensions, settings

from helpers import client_frame

REPO = Path(__file__).resolve().parent.parent


@given(st.text(min_size=2, max_size=300), st.data())
def test_an_empty_read_in_the_middle_of_a_streamed_text_frame_changes_nothing(text: str, data: st.DataObject) -> None:
    wire = client_frame(Opcode.TEXT, text.encode("utf-8"))
    cut = data.draw(st.integers(min_value=3, max_value=len(wire) - 1))
    p = Protocol(Side.SERVER)
    events = p.receive_data(wire[:cut])
    events += p.receive_data(b"")
    events += p.receive_data(wire[cut:])
    assert events == [TextMessage(text)]


def test_invalid_utf8_is_still_found_after_an_empty_read() -> None:
    wire = client_frame(Opcode.TEXT, b"ok" + b"\xff" + b"x" * 200)
    p = Protocol(Side.SERVER)
    assert p.receive_data(wire[:10]) == []
    assert p.receive_data(b"") == []
    try:
        p.receive_data(wire[10:])
    except ProtocolError as exc:
        assert exc.close_code == 1007
    else:
        raise AssertionError("invalid UTF-8 was accepted")


def test_masking_falls_back_to_python_without_the_accelerator() -> None:
    # A build without the C accelerator (or a platform where it failed to compile).
    script = (
        "import sys; sys.modules['wskit._speedups'] = None\n"
        "import wskit.mask as m\n"
        "from wskit import Protocol, Side, BinaryMessage\n"
        "assert not m.USING_SPEEDUPS and m.send_nowait is None\n"
        "assert m.apply_mask is m.py_apply_mask and m.mask_frame is m.py_mask_frame\n"
        "payload = bytes(range(256)) * 5\n"
        "c, s = Protocol(Side.CLIENT), Protocol(Side.SERVER)\n"
        "wire = b''.join(c.send_binary(payload))\n"
        "assert s.receive_data(wire) == [BinaryMessage(payload)]\n"
        "print(m.apply_mask(b'abcd', b'\\x01\\x02\\x03\\x04').hex())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == py_apply_mask(b"abcd", b"\x01\x02\x03\x04").hex() == "60606060"


class _Other(ClientExtensionFactory):
    name = "x-other"


def test_deflate_settings_that_turn_compression_off() -> None:
    assert settings({"compression": None}) is None
    assert settings({"compression": False}) is None
    assert settings({"compression": {"enabled": False, "level": 9}}) is None
    assert settings({"compression": {"enabled": True, "level": 9, "min_size": None}}) == {"level": 9}


def test_extensions_given_with_compression_off_in_the_managers_settings_get_no_deflate() -> None:
    other = _Other()
    manager = PluginManager(entry_points=False, options={"compression": {"enabled": False}})
    assert io_extensions("deflate", [other], "client", manager) == [other]
    manager = PluginManager(entry_points=False)
    [first, added] = io_extensions("deflate", [other], "client", manager)  # type: ignore[misc]
    assert first is other and added.name == "permessage-deflate"


def test_deflate_settings_and_compression_arguments_of_another_kind_are_refused() -> None:
    with pytest.raises(ConfigError, match="compression: expected 'deflate', None or a mapping of settings, got 'zstd'"):
        settings({"compression": "zstd"})
    with pytest.raises(ValueError, match="compression must be 'deflate' or None, got 'gzip'"):
        io_extensions("gzip", None, "server", PluginManager(entry_points=False))
    # The manager leaves the deflate plugin out: nothing is added.
    other = _Other()
    manager = PluginManager(entry_points=False, disable=["permessage-deflate"])
    assert io_extensions("deflate", [other], "client", manager) == [other]
