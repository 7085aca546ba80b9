"""Tests for the validation of a state-machine spec (wskit.statemachine): each malformed shape is
named with its key, and the shipped spec is found in a checkout without an install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_statemachine import config_error, spec_data, write_spec

from wskit import ClientProtocol, Protocol, Side, State
from wskit.exceptions import ConfigError
from wskit.statemachine import load_spec

REPO = Path(__file__).resolve().parent.parent


def test_allow_must_be_a_list(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["open"]["allow"] = "receive"
    assert "states.open.allow: expected a list of operations" in config_error(tmp_path, data)


@pytest.mark.parametrize("states", [{}, ["open", "closed"], None])
def test_states_must_be_a_non_empty_mapping(tmp_path: Path, states: Any) -> None:
    data = spec_data()
    data["states"] = states
    assert "states: expected a non-empty mapping of state names" in config_error(tmp_path, data)


def test_state_names_must_be_identifiers(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["half-open"] = {"public": "closing", "allow": []}
    assert "states.half-open: state names must be identifiers" in config_error(tmp_path, data)


def test_state_must_be_a_mapping(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["open"] = ["receive", "send_data"]
    message = config_error(tmp_path, data)
    assert "states.open: expected a mapping with public, allow, facts, description" in message


def test_transitions_must_be_a_list(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"] = {"accept": "open"}
    assert "transitions: expected a list of {trigger, source, dest}" in config_error(tmp_path, data)


def test_each_transition_must_be_a_mapping(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"].append("accept connecting open")
    index = len(data["transitions"]) - 1
    message = config_error(tmp_path, data)
    assert f"transitions[{index}]: expected a mapping with trigger, source, dest" in message


def test_every_state_that_is_not_terminal_needs_an_eof_transition(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"] = [t for t in data["transitions"]
                           if not (t["trigger"] == "eof" and t["source"] == "closing_sent")]
    data["states"].pop("lost_sent")
    message = config_error(tmp_path, data)
    assert "states.closing_sent: no eof transition leaves it" in message


def test_the_initial_state_declares_no_closing_facts(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["connecting"]["facts"] = ["close_sent"]
    message = config_error(tmp_path, data)
    assert "states.connecting.facts: the initial state cannot declare closing-handshake facts" in message


def spec_without_connecting(tmp_path: Path) -> Path:
    """A valid spec whose connections start open: it has no connecting state."""
    data = spec_data()
    data["initial"] = "open"
    del data["states"]["connecting"]
    transitions = []
    for t in data["transitions"]:
        sources = t["source"] if isinstance(t["source"], list) else [t["source"]]
        sources = [s for s in sources if s != "connecting"]
        if sources:
            transitions.append({**t, "source": sources})
    data["transitions"] = transitions
    data["states"].pop("rejected")
    data["states"].pop("rejected_closed")
    data["transitions"] = [t for t in transitions if not set(t["source"]) & {"rejected"}]
    return write_spec(tmp_path, data)


def test_a_state_the_spec_does_not_have_is_refused_by_name(tmp_path: Path) -> None:
    spec = load_spec(spec_without_connecting(tmp_path))
    # A data-only Protocol starts open: the spec is usable as it is.
    assert Protocol(Side.SERVER, spec=spec).state is State.OPEN
    # A client starts with its opening handshake, which this spec has no state for.
    with pytest.raises(ValueError, match="no state with public state 'connecting'") as info:
        ClientProtocol("ws://127.0.0.1/", spec=spec)
    assert "spec.yaml" in str(info.value)


def test_the_shipped_spec_is_found_in_a_checkout_without_an_install() -> None:
    # Without the wskit.specs package (a source checkout that was never installed),
    # the spec is read from the repository's specs/ directory.
    script = (
        "import sys; sys.modules['wskit.specs'] = None\n"
        "from wskit.statemachine import default_spec, spec_path\n"
        "print(spec_path())\n"
        "print(default_spec().states['open'].public.value)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=REPO, timeout=60)
    path, public = result.stdout.splitlines()
    assert Path(path) == REPO / "specs" / "connection.yaml"
    assert public == "open"


def test_config_error_is_raised_for_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty\.yaml"):
        load_spec(path)
