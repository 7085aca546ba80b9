"""Inputs the fuzzers (tests/fuzz) found, kept as plain tests: each broke a documented contract once."""

from __future__ import annotations

import pytest

from wskit.config import loads
from wskit.exceptions import ConfigError

# -- configuration loader: every error names FILE:LINE ------------------------------------------


@pytest.mark.parametrize(("text", "line", "char"), [
    ("\x08", 1, "U+0008"),  # found by test_fuzz_config_loader: the error had no line, and a YAML-internal position
    ("max_size: 1\nmax_queue: \x01\n", 2, "U+0001"),
    ("server:\n  host: a\ufffe\n", 2, "U+FFFE"),
])
def test_config_character_yaml_refuses_names_file_and_line(text: str, line: int, char: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads(text, "fuzz.yaml")
    (error,) = info.value.errors
    assert error.startswith(f"fuzz.yaml:{line}: invalid YAML: character {char} is not allowed"), error
    assert "<unicode string>" not in error
