"""Fuzz the YAML configuration loader (see fuzz_targets.py)."""

from __future__ import annotations

from fuzz_strategies import FUZZ, config_texts
from fuzz_targets import check_config
from hypothesis import given


@FUZZ
@given(config_texts)
def test_fuzz_config_loader(text: str) -> None:
    check_config(text)
