"""Tests for wskit.statemachine and specs/connection.yaml: validation, and the YAML as the source of truth."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import transitions.core
import yaml

from wskit import ClientProtocol, Close, Protocol, ServerProtocol, Side, State, TextMessage
from wskit.exceptions import ConfigError, InvalidState
from wskit.frames import Opcode
from wskit.statemachine import FACTS, OPERATIONS, TRIGGERS, StateSpec, Trigger, default_spec, load_spec, spec_path

from helpers import client_frame, close_payload, make_pair, state_of

REPO_SPEC = Path(__file__).resolve().parent.parent / "specs" / "connection.yaml"


def spec_data() -> dict[str, Any]:
    data = yaml.safe_load(REPO_SPEC.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def write_spec(tmp_path: Path, data: dict[str, Any], name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def config_error(tmp_path: Path, data: Any) -> str:
    path = write_spec(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path.resolve()) in message or path.name in message, f"the error must name the file: {message}"
    return message


# -- the shipped spec ------------------------------------------------------------------------


def test_shipped_spec_is_the_repository_file() -> None:
    shipped = Path(str(spec_path()))
    assert shipped.read_text(encoding="utf-8") == REPO_SPEC.read_text(encoding="utf-8")
    assert load_spec() is default_spec()


def test_shipped_spec_permissions_match_api_table() -> None:
    spec = default_spec()
    assert spec.initial == "connecting"
    # (public state, data + ping/pong allowed, send_close allowed) per internal state.
    table = {name: (info.public, info.send_data, "send_close" in info.triggers) for name, info in spec.states.items()}
    assert table["connecting"] == (State.CONNECTING, False, False)
    assert table["open"] == (State.OPEN, True, True)
    assert table["closing_sent"] == (State.CLOSING, False, False)
    assert table["closing_received"] == (State.CLOSING, True, True)
    assert table["failing"] == (State.CLOSING, True, False)
    assert table["closed"] == (State.CLOSED, False, False)
    assert spec.states["open"].receive and spec.states["closing_sent"].receive
    assert not spec.states["closing_received"].receive and not spec.states["closed"].receive
    assert spec.states["connecting"].handshake


def test_shipped_spec_uses_only_known_triggers_and_operations() -> None:
    data = spec_data()
    assert {t["trigger"] for t in data["transitions"]} <= TRIGGERS
    for props in data["states"].values():
        assert set(props.get("allow", [])) <= set(OPERATIONS)
        assert set(props.get("facts", [])) <= set(FACTS)
    # One vocabulary: the trigger names are the Trigger members, each documented.
    assert TRIGGERS == {t.value for t in Trigger}
    assert all(t.doc for t in Trigger)


# -- one Machine, no transitions call per frame ---------------------------------------------------


def test_all_connections_share_one_machine() -> None:
    protocols = [Protocol(Side.CLIENT), Protocol(Side.SERVER), ClientProtocol(), ServerProtocol()]
    machines = {id(p._spec.machine) for p in protocols}
    assert len(machines) == 1
    assert protocols[0]._spec.machine is default_spec().machine
    for _ in range(50):
        Protocol(Side.SERVER).send_close()
    assert default_spec().machine.models == [], "connections must not be added to the Machine as models"


def test_spec_loaded_from_same_path_is_shared(tmp_path: Path) -> None:
    path = write_spec(tmp_path, spec_data())
    a = Protocol(Side.SERVER, spec=path)
    b = Protocol(Side.CLIENT, spec=str(path))
    assert a._spec is b._spec
    assert a._spec.machine is b._spec.machine
    assert a._spec is not default_spec()


def test_per_frame_path_does_not_call_transitions(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"fire": 0, "transitions": 0}
    real_fire = StateSpec.fire

    def counting_fire(self: StateSpec, model: Any, trigger: str, **kwargs: Any) -> Any:
        calls["fire"] += 1
        return real_fire(self, model, trigger, **kwargs)

    monkeypatch.setattr(StateSpec, "fire", counting_fire)
    # Every way into transitions that changes a model's state.
    for cls, name in [(transitions.core.Event, "trigger"), (transitions.core.Machine, "set_state"),
                      (transitions.core.Transition, "execute")]:
        real = getattr(cls, name)

        def counting(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            calls["transitions"] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(cls, name, counting)
    c, s = make_pair()
    frame = client_frame(Opcode.TEXT, b"hello")
    for _ in range(1000):
        assert s.receive_data(frame) == [TextMessage("hello")]
    assert s.receive_data(frame * 1000) == [TextMessage("hello")] * 1000
    for _ in range(1000):
        c.send_text("x")
        s.send_binary(b"y")
        c.send_ping(b"")
        s.send_pong(b"")
    assert calls == {"fire": 0, "transitions": 0}
    # The counters do see state transitions.
    assert s.receive_data(client_frame(Opcode.CLOSE, close_payload(1000))) == [Close(1000, "")]
    assert calls["fire"] == 1 and calls["transitions"] >= 1
    assert s.state is State.CLOSING


# -- the YAML is the source of truth -------------------------------------------------------------


def test_removing_send_data_from_closing_received_forbids_sending(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["closing_received"]["allow"] = ["send_close"]
    path = write_spec(tmp_path, data)
    s = Protocol(Side.SERVER, spec=path)
    assert s.receive_data(client_frame(Opcode.CLOSE, close_payload(1000))) == [Close(1000, "")]
    assert s.state is State.CLOSING
    with pytest.raises(InvalidState):
        s.send_text("finishing")
    with pytest.raises(InvalidState):
        s.send_pong(b"")
    s.send_close(1000)  # still allowed: the transition is in the spec
    assert state_of(s) is State.CLOSED
    # The shipped spec is untouched.
    t = Protocol(Side.SERVER)
    t.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
    assert t.send_text("finishing")


def test_receive_close_to_a_state_that_cannot_answer_is_refused(tmp_path: Path) -> None:
    data = spec_data()
    # The peer's Close would lead to "failed": its facts do not say a Close was
    # received, and they say one was sent, which receive_close cannot do.
    for t in data["transitions"]:
        if t["trigger"] == "receive_close" and t["source"] == "open":
            t["dest"] = "failed"
    message = config_error(tmp_path, data)
    assert "states.failed.facts: receive_close from 'open' leads here, so it must declare close_received" in message
    assert "states.failed.facts: declares close_sent but is reached from 'open' by receive_close" in message


def test_spec_without_receive_in_open_reads_nothing(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["open"]["allow"] = ["send_data", "send_close"]
    s = Protocol(Side.SERVER, spec=write_spec(tmp_path, data))
    assert s.receive_data(client_frame(Opcode.TEXT, b"x")) == []


def test_spec_object_can_be_passed(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["open"]["description"] = "custom open"
    spec = StateSpec(data)
    p = Protocol(Side.CLIENT, spec=spec)
    assert p._spec is spec
    p.send_close()
    with pytest.raises(InvalidState, match="we sent Close"):
        p.send_text("x")


# -- validation ------------------------------------------------------------------------------------


def test_unknown_state_in_transition(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"].append({"trigger": "eof", "source": "nowhere", "dest": "closed"})
    data["transitions"].append({"trigger": "eof", "source": "open", "dest": "limbo"})
    message = config_error(tmp_path, data)
    assert "'nowhere'" in message and "'limbo'" in message
    assert "transitions[" in message


def test_unreachable_state(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["island"] = {"public": "closing", "allow": []}
    data["transitions"].append({"trigger": "eof", "source": "island", "dest": "lost"})
    # "island" is not the first CLOSING state, so nothing starts there or leads to it.
    message = config_error(tmp_path, data)
    assert "island" in message and "unreachable" in message


def test_spec_without_a_terminal_state(tmp_path: Path) -> None:
    data = spec_data()
    # eof from a closed state back to itself: no state is ever final.
    for t in data["transitions"]:
        if t["trigger"] == "eof":
            t["dest"] = "closed" if t["source"] != "rejected" else "rejected"
    data["states"] = {n: p for n, p in data["states"].items()
                      if n not in ("ended", "lost", "lost_sent", "lost_received", "failed_closed",
                                   "failed_received_closed", "rejected_closed")}
    data["transitions"].append({"trigger": "eof", "source": "closed", "dest": "closed"})
    message = config_error(tmp_path, data)
    assert "no terminal state" in message
    assert "states.closing_sent: dead end" in message


@pytest.mark.parametrize("operation", ["send", "fly", "close"])
def test_unknown_operation(tmp_path: Path, operation: str) -> None:
    data = spec_data()
    data["states"]["open"]["allow"].append(operation)
    message = config_error(tmp_path, data)
    assert repr(operation) in message and "states.open.allow" in message


def test_unknown_trigger(tmp_path: Path) -> None:
    data = spec_data()
    data["transitions"].append({"trigger": "explode", "source": "open", "dest": "closed"})
    message = config_error(tmp_path, data)
    assert "'explode'" in message


@pytest.mark.parametrize("key", ["after", "before", "conditions", "unless", "prepare"])
def test_transition_callbacks_refused(tmp_path: Path, key: str) -> None:
    data = spec_data()
    data["transitions"][0][key] = "os.system"
    message = config_error(tmp_path, data)
    assert key in message


@pytest.mark.parametrize("key", ["on_enter", "on_exit"])
def test_state_callbacks_refused(tmp_path: Path, key: str) -> None:
    data = spec_data()
    data["states"]["open"][key] = "subprocess.call"
    message = config_error(tmp_path, data)
    assert f"states.open.{key}" in message


def test_unknown_top_level_key(tmp_path: Path) -> None:
    data = spec_data()
    data["callbacks"] = {"after_state_change": "os.system"}
    assert "callbacks" in config_error(tmp_path, data)


def test_bad_public_state(tmp_path: Path) -> None:
    data = spec_data()
    data["states"]["open"]["public"] = "halfopen"
    assert "halfopen" in config_error(tmp_path, data)


def test_unknown_initial_state(tmp_path: Path) -> None:
    data = spec_data()
    data["initial"] = "dreaming"
    assert "dreaming" in config_error(tmp_path, data)


def test_spec_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_spec(path)


def test_every_error_is_reported(tmp_path: Path) -> None:
    data = copy.deepcopy(spec_data())
    data["states"]["open"]["allow"].append("bogus")
    data["transitions"].append({"trigger": "explode", "source": "open", "dest": "closed"})
    path = write_spec(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    assert len(info.value.errors) >= 2


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("initial: connecting\nstates:\n  open: {public: open\n  closed: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_spec(path)
    message = str(info.value)
    assert "broken.yaml" in message
    line = message.split("broken.yaml", 1)[1]
    assert line.startswith(":") and line[1].isdigit(), f"no line number in {message!r}"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_error_raised_by_protocol_constructor(tmp_path: Path) -> None:
    data = spec_data()
    del data["states"]["ended"]
    with pytest.raises(ConfigError):
        Protocol(Side.SERVER, spec=write_spec(tmp_path, data))


def test_fast_fire_matches_transitions_event_trigger_for_every_transition() -> None:
    from wskit.statemachine import default_spec

    spec = default_spec()

    class Model:
        _sm_state = ""

    for trigger, source, dest in spec.transitions:
        fast, full = Model(), Model()
        fast._sm_state = full._sm_state = source
        assert spec.fire(fast, trigger).name == dest
        assert spec.fire(full, trigger, full=True).name == dest
        assert fast._sm_state == full._sm_state == dest
