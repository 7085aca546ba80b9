"""Tests for wskit.statemachine and specs/connection.yaml: validation, and the YAML as the source of truth."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import transitions.core
import yaml

from wskit import ClientProtocol, Close, ConnectionClosed, Protocol, ServerProtocol, Side, State, TextMessage
from wskit.exceptions import ConfigError, InvalidState, ProtocolError
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


# -- the closing-handshake facts --------------------------------------------------------------------


def test_shipped_facts() -> None:
    states = default_spec().states
    facts = {name: (i.close_sent, i.close_received, i.failed, i.clean, i.answer_may_wait, i.terminal)
             for name, i in states.items()}
    assert facts["open"] == (False, False, False, False, False, False)
    assert facts["closing_sent"] == (True, False, False, False, False, False)
    assert facts["closing_received"] == (False, True, False, False, True, False)
    assert facts["failing"] == (True, False, True, False, False, False)
    assert facts["closed"] == (True, True, False, True, False, False)
    assert facts["ended"] == (True, True, False, True, False, True)
    assert default_spec().closes_transport_first == "server"
    # Every state the transport can close in reports ConnectionClosed once: eof leads to a terminal state.
    for info in states.values():
        assert info.terminal == (not info.triggers)
        assert info.terminal or "eof" in info.triggers


def test_protocol_properties_follow_the_facts() -> None:
    s = Protocol(Side.SERVER)
    assert (s.close_sent, s.close_received, s.may_send_close, s.close_answer_may_wait, s.closed_cleanly) == (
        False, False, True, False, False)
    s.receive_data(client_frame(Opcode.CLOSE, close_payload(1000)))
    assert (s.close_sent, s.close_received, s.may_send_close, s.close_answer_may_wait, s.closed_cleanly) == (
        False, True, True, True, False)
    s.send_close(1000)
    assert (s.close_sent, s.close_received, s.may_send_close, s.close_answer_may_wait, s.closed_cleanly) == (
        True, True, False, False, True)
    assert s.receive_eof() == [ConnectionClosed(None)]
    assert s.closed_cleanly and s.receive_eof() == []
    assert s.closes_transport_first and not Protocol(Side.CLIENT).closes_transport_first


def test_closes_transport_first_comes_from_the_spec(tmp_path: Path) -> None:
    data = spec_data()
    data["closes_transport_first"] = "client"
    path = write_spec(tmp_path, data)
    assert Protocol(Side.CLIENT, spec=path).closes_transport_first
    assert not Protocol(Side.SERVER, spec=path).closes_transport_first


def test_failure_is_reported_only_in_a_failed_state() -> None:
    s = Protocol(Side.SERVER)
    with pytest.raises(ProtocolError) as info:
        s.receive_data(client_frame(0x3))
    assert s.failure is info.value and not s.closed_cleanly
    [closed] = s.receive_eof()
    assert isinstance(closed, ConnectionClosed) and closed.exception is info.value
    assert s.failure is info.value and s.close_code == 1002


def rule_error(tmp_path: Path, change: Any) -> str:
    data = spec_data()
    change(data)
    return config_error(tmp_path, data)


def transition(data: dict[str, Any], trigger: str, source: str) -> dict[str, Any]:
    return next(t for t in data["transitions"] if t["trigger"] == trigger and t["source"] == source)


def test_refuses_data_after_our_close(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["closing_sent"]["allow"].append("send_data"))
    assert "states.closing_sent.allow: send_data after our Close was sent (RFC 6455 §5.5.1" in message


def test_refuses_data_in_a_failed_state_entered_after_our_close(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["failed"]["allow"].append("send_data"))
    assert "states.failed.allow: send_data after our Close was sent" in message


def test_refuses_a_second_close(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["states"]["closing_sent"]["allow"].append("send_close")
        d["transitions"].append({"trigger": "send_close", "source": "closing_sent", "dest": "closed"})

    message = rule_error(tmp_path, change)
    assert "states.closing_sent.allow: send_close after our Close was sent: a second Close" in message


def test_refuses_an_unanswered_close(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["states"]["closing_received"]["allow"].remove("send_close")
        d["states"]["closing_received"]["facts"].remove("answer_may_wait")
        d["transitions"].remove(transition(d, "send_close", "closing_received"))

    message = rule_error(tmp_path, change)
    assert "states.closing_received.allow: the peer's Close was received and ours not sent" in message
    assert "a Close frame is answered with a Close frame" in message


def test_refuses_send_close_permission_without_transition(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["failing"]["allow"].append("send_close"))
    assert "states.failing.allow: send_close is allowed if and only if a send_close transition leaves" in message


def test_refuses_a_fact_no_trigger_explains(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["closing_sent"]["facts"].append("close_received"))
    assert ("states.closing_sent.facts: declares close_received but is reached from 'open' by send_close, "
            "which cannot make it true (only receive_close)") in message


def test_refuses_a_trigger_without_its_fact(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["states"]["closing_received"]["facts"] = []

    message = rule_error(tmp_path, change)
    assert "states.closing_received.facts: receive_close from 'open' leads here, so it must declare close_received" \
        in message


def test_refuses_a_fact_that_is_lost(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["lost_sent"].pop("facts"))
    assert "states.lost_sent.facts: lacks close_sent, which holds in 'closing_sent' before eof" in message


def test_refuses_clean_that_does_not_follow_from_the_facts(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["failed_closed"]["facts"].append("clean"))
    assert "states.failed_closed.facts: clean must be declared exactly when" in message
    message = rule_error(tmp_path, lambda d: d["states"]["closed"]["facts"].remove("clean"))
    assert "states.closed.facts: clean must be declared exactly when" in message


def test_refuses_answer_may_wait_without_an_answer(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["open"].update(facts=["answer_may_wait"]))
    assert "states.open.facts: answer_may_wait needs close_received" in message


@pytest.mark.parametrize("value", [None, "nobody", "SERVER"])
def test_refuses_a_bad_closes_transport_first(tmp_path: Path, value: Any) -> None:
    def change(d: dict[str, Any]) -> None:
        if value is None:
            del d["closes_transport_first"]
        else:
            d["closes_transport_first"] = value

    message = rule_error(tmp_path, change)
    assert "closes_transport_first: expected the side that closes the TCP connection first" in message


def test_refuses_terminal_rules(tmp_path: Path) -> None:
    # eof into a state that is not terminal, and a terminal state entered by another trigger.
    def change(d: dict[str, Any]) -> None:
        transition(d, "eof", "closed")["dest"] = "rejected"
        transition(d, "receive_close", "closing_sent")["dest"] = "ended"

    message = rule_error(tmp_path, change)
    assert "states.closed: eof leads to 'rejected', which is not terminal" in message
    assert "states.ended: receive_close from 'closing_sent' enters this terminal state: only eof ends" in message


def test_refuses_a_terminal_state_that_is_not_closed(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["lost"].update(public="closing"))
    assert "states.lost: a terminal state (no transition leaves it) must be public: closed" in message


def test_refuses_operations_in_a_closed_state(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["ended"].update(allow=["send_data"]))
    assert "states.ended.allow: a closed state allows no operation" in message


def test_unknown_fact(tmp_path: Path) -> None:
    message = rule_error(tmp_path, lambda d: d["states"]["open"].update(facts=["half_closed"]))
    assert "states.open.facts: unknown fact 'half_closed'" in message
