"""The connection state machine, loaded from ``specs/connection.yaml``.

The YAML spec declares the states, the triggers between them and, per
state, the operations allowed and the facts of the closing handshake that
hold there (a Close sent, a Close received, failed, clean, ...).
:func:`load_spec` validates a spec (its structure and the RFC 6455 rules a
connection must keep) and builds a :class:`StateSpec`: one
``transitions.Machine`` (shared by every connection that uses the spec)
plus a precomputed :class:`StateInfo` per state. A connection holds its
current :class:`StateInfo`; the per-frame path reads its attributes and
never calls ``transitions``. Triggers (a handful per connection) go through
the ``Machine``.

The vocabulary a spec may use is defined here, once: :data:`OPERATIONS`,
:data:`FACTS` and :class:`Trigger`, each with the one-line description that
validation messages and ``docs/state-machine.md`` show.
"""

from __future__ import annotations

import enum
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from transitions import Machine

from .exceptions import ConfigError

__all__ = [
    "State",
    "StateInfo",
    "StateSpec",
    "Trigger",
    "load_spec",
    "default_spec",
    "FACTS",
    "OPERATIONS",
    "SIDES",
    "TRIGGERS",
]


class State(enum.Enum):
    """Public connection state (what ``protocol.state`` reports)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"

    def __str__(self) -> str:
        return f"State.{self.name}"


class Trigger(str, enum.Enum):
    """The triggers wskit fires; a spec's transitions may use only these.

    Each member is its trigger's name (a ``str``) and carries, as ``doc``,
    what fires it.
    """

    doc: str

    def __new__(cls, value: str, doc: str) -> Trigger:
        member = str.__new__(cls, value)
        member._value_ = value
        member.doc = doc
        return member

    def __str__(self) -> str:
        return str(self.value)

    ACCEPT = ("accept", "the opening handshake succeeded (client: a valid 101; server: `accept()`)")
    HANDSHAKE_FAILED = ("handshake_failed", "the opening handshake failed or was rejected")
    SEND_CLOSE = ("send_close", "we write a Close frame (`send_close()`)")
    RECEIVE_CLOSE = ("receive_close", "we read the peer's Close frame")
    FAIL = ("fail", "the connection failed (a protocol violation, an extension or plugin error); "
                    "our Close is in `exc.to_send`")
    EOF = ("eof", "the transport was closed (`receive_eof()`)")


TRIGGERS = frozenset(t.value for t in Trigger)
"""The names of the :class:`Trigger` members."""

OPERATIONS: Mapping[str, str] = {
    "handshake": "`receive_data` parses the opening handshake",
    "receive": "`receive_data` parses frames",
    "send_data": "`send_text`, `send_binary`, `send_continuation`, `send_ping`, `send_pong`",
    "send_close": "`send_close`: start the closing handshake, or answer the peer's Close",
}
"""Operations a state may allow (``allow:``), with what each permits."""

FACTS: Mapping[str, str] = {
    "close_sent": "our Close frame was written (or waits in a failure's `exc.to_send`)",
    "close_received": "the peer's Close frame was received",
    "answer_may_wait": "our answer to the peer's Close may wait until the application has taken "
                       "the messages that came before it (RFC 6455 §5.5.1)",
    "failed": "the connection failed: a protocol violation, an extension or plugin error, "
              "or a failed opening handshake",
    "clean": "the closing handshake completed without a failure (RFC 6455 §7.1.4)",
}
"""Closing-handshake facts a state may declare (``facts:``); a fact left out is false."""

SIDES = ("client", "server")
"""Values of the top-level ``closes_transport_first`` key."""

# The facts a trigger may make true, and the facts it must make true.
_MAY_SET: Mapping[str, frozenset[str]] = {
    "close_sent": frozenset({Trigger.SEND_CLOSE, Trigger.FAIL}),
    "close_received": frozenset({Trigger.RECEIVE_CLOSE}),
    "failed": frozenset({Trigger.FAIL, Trigger.HANDSHAKE_FAILED}),
}
_MUST_SET: Mapping[str, tuple[str, ...]] = {
    Trigger.SEND_CLOSE: ("close_sent",),
    Trigger.RECEIVE_CLOSE: ("close_received",),
    Trigger.FAIL: ("close_sent", "failed"),
    Trigger.HANDSHAKE_FAILED: ("failed",),
}

_STATE_KEYS = frozenset({"public", "allow", "facts", "description"})
_TRANSITION_KEYS = frozenset({"trigger", "source", "dest"})
_TOP_KEYS = frozenset({"initial", "closes_transport_first", "states", "transitions"})


@dataclass(frozen=True, slots=True, eq=False)
class StateInfo:
    """Precomputed facts about one state, read on the hot path.

    Attributes:
        name: the state's name in the spec.
        public: the :class:`State` users see.
        handshake: ``receive_data`` parses the opening handshake.
        receive: ``receive_data`` parses frames.
        send_data: data frames, Ping and Pong may be sent.
        send_close: a Close may be sent (to start the closing handshake, or
            to answer the peer's).
        close_sent: our Close was written (or waits in a failure's ``to_send``).
        close_received: the peer's Close was received.
        answer_may_wait: our answer to the peer's Close may wait until the
            application has taken the messages that came before it.
        failed: the connection failed.
        clean: the closing handshake completed without a failure.
        terminal: no transition leaves this state: the transport is closed
            and the connection is over.
        triggers: the triggers valid in this state.
        description: one line, for messages, diagrams and docs.
    """

    name: str
    public: State
    handshake: bool
    receive: bool
    send_data: bool
    send_close: bool
    close_sent: bool
    close_received: bool
    answer_may_wait: bool
    failed: bool
    clean: bool
    terminal: bool
    triggers: frozenset[str]
    description: str


class StateSpec:
    """A validated state-machine spec and the ``transitions`` machine built from it.

    Attributes:
        source: where the spec came from (a path, or ``"<dict>"``).
        initial: the initial state's name.
        closes_transport_first: the side (``"client"`` or ``"server"``)
            that closes the TCP connection first once the connection is
            over; the other side waits for it (RFC 6455 §7.1.1).
        states: state name -> :class:`StateInfo`.
        transitions: ``(trigger, source, dest)`` triples, sources expanded.
        machine: the ``transitions.Machine`` (no models registered; events
            are fired on connection objects directly).
    """

    __slots__ = ("source", "initial", "closes_transport_first", "states", "transitions", "machine",
                 "_events", "_table")

    def __init__(self, data: Mapping[str, Any], source: str = "<dict>") -> None:
        self.source = source
        _validate(data, source)
        names = list(data["states"])
        triples = _expand(data, names)
        self.transitions = triples
        self.initial: str = data["initial"]
        self.closes_transport_first: str = data["closes_transport_first"]
        states: dict[str, StateInfo] = {}
        for name in names:
            props = data["states"][name] or {}
            allow = set(props.get("allow") or [])
            facts = set(props.get("facts") or [])
            triggers = frozenset(trig for trig, src, _ in triples if src == name)
            states[name] = StateInfo(
                name=name,
                public=State(props["public"]),
                handshake="handshake" in allow,
                receive="receive" in allow,
                send_data="send_data" in allow,
                send_close="send_close" in allow,
                close_sent="close_sent" in facts,
                close_received="close_received" in facts,
                answer_may_wait="answer_may_wait" in facts,
                failed="failed" in facts,
                clean="clean" in facts,
                terminal=not triggers,
                triggers=triggers,
                description=str(props.get("description", "")),
            )
        self.states = states
        # One Machine per spec, never per connection (docs/state-machine.md). No callbacks
        # are named in the spec, so it cannot make transitions import anything.
        self.machine = Machine(
            model=None,
            states=names,
            transitions=[{"trigger": a, "source": b, "dest": c} for a, b, c in triples],
            initial=self.initial,
            auto_transitions=False,
            model_attribute="_sm_state",
        )
        self._events = self.machine.events
        # (source, trigger) -> the machine's own State object for the dest, and its
        # StateInfo. A spec cannot name callbacks or conditions, so executing a
        # transition is exactly the machine's set_state(dest): 0.3 us instead of
        # the 6 us of Event.trigger's generic callback and logging path
        # (measured, see docs/state-machine.md). full=True takes that path.
        machine_states = self.machine.states
        self._table: dict[tuple[str, str], tuple[Any, StateInfo]] = {
            (src, trig): (machine_states[dest], states[dest]) for trig, src, dest in triples}

    def fire(self, model: Any, trigger: str, *, full: bool = False) -> StateInfo:
        """Fire ``trigger`` on ``model`` (an object with a ``_sm_state`` attribute).

        Args:
            model: the connection; its ``_sm_state`` holds the state name.
            trigger: the trigger to fire (a :class:`Trigger`).
            full: go through ``transitions``' complete ``Event.trigger``
                machinery (same result, ten times slower).

        Returns:
            The :class:`StateInfo` of the new state.

        Raises:
            KeyError: if the trigger is not valid in the model's state (callers
                check ``StateInfo.triggers`` first and raise ``InvalidState``).
        """
        if full:
            self._events[trigger].trigger(model)
            return self.states[model._sm_state]
        state, info = self._table[(model._sm_state, trigger)]
        self.machine.set_state(state, model)
        return info

    def initial_for(self, public: State) -> str:
        """Return the first internal state (in the spec's order) whose public state is ``public``."""
        for name, info in self.states.items():
            if info.public is public:
                return name
        raise ValueError(f"{self.source}: no state with public state {public.value!r}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _expand(data: Mapping[str, Any], names: list[str]) -> list[tuple[str, str, str]]:
    """Return the ``(trigger, source, dest)`` triples of a valid spec, ``"*"`` and lists expanded."""
    triples: list[tuple[str, str, str]] = []
    for t in data["transitions"]:
        sources = names if t["source"] == "*" else _as_list(t["source"])
        triples.extend((str(t["trigger"]), s, t["dest"]) for s in sources)
    return triples


def _check_names(errors: list[str], source: str, key: str, values: Any, vocabulary: Mapping[str, str],
                 what: str) -> None:
    if values is None:
        return
    if not isinstance(values, list):
        errors.append(f"{source}: {key}: expected a list of {what}s")
        return
    for value in values:
        if value not in vocabulary:
            errors.append(f"{source}: {key}: unknown {what} {value!r} (expected {', '.join(sorted(vocabulary))})")


def _validate(data: Any, source: str) -> None:
    errors: list[str] = []

    def err(key: str, message: str) -> None:
        errors.append(f"{source}: {key}: {message}")

    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the spec must be a mapping with keys {', '.join(sorted(_TOP_KEYS))}")
    for key in data:
        if key not in _TOP_KEYS:
            err(str(key), f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
    states = data.get("states")
    if not isinstance(states, Mapping) or not states:
        err("states", "expected a non-empty mapping of state names")
        raise ConfigError(errors)
    if data.get("closes_transport_first") not in SIDES:
        err("closes_transport_first", f"expected the side that closes the TCP connection first, one of "
                                      f"{', '.join(SIDES)} (RFC 6455 §7.1.1: server), "
                                      f"got {data.get('closes_transport_first')!r}")
    public_values = {s.value for s in State}
    for name, props in states.items():
        if not isinstance(name, str) or not name.isidentifier():
            err(f"states.{name}", "state names must be identifiers")
        props = props or {}
        if not isinstance(props, Mapping):
            err(f"states.{name}", "expected a mapping with public, allow, facts, description")
            continue
        for key in props:
            if key not in _STATE_KEYS:
                err(f"states.{name}.{key}", f"unknown key (expected one of {', '.join(sorted(_STATE_KEYS))})")
        if props.get("public") not in public_values:
            expected = ", ".join(sorted(public_values))
            err(f"states.{name}.public", f"expected one of {expected}, got {props.get('public')!r}")
        _check_names(errors, source, f"states.{name}.allow", props.get("allow"), OPERATIONS, "operation")
        _check_names(errors, source, f"states.{name}.facts", props.get("facts"), FACTS, "fact")
    initial = data.get("initial")
    if initial not in states:
        err("initial", f"{initial!r} is not a declared state")
    transitions = data.get("transitions")
    if not isinstance(transitions, list):
        err("transitions", "expected a list of {trigger, source, dest}")
        transitions = []
    for i, t in enumerate(transitions):
        where = f"transitions[{i}]"
        if not isinstance(t, Mapping):
            err(where, "expected a mapping with trigger, source, dest")
            continue
        for key in t:
            if key not in _TRANSITION_KEYS:
                err(f"{where}.{key}", "unknown key (callbacks and conditions are not allowed in a spec)")
        if t.get("trigger") not in TRIGGERS:
            err(f"{where}.trigger", f"unknown trigger {t.get('trigger')!r} (expected {', '.join(sorted(TRIGGERS))})")
        dest = t.get("dest")
        if dest not in states:
            err(f"{where}.dest", f"unknown state {dest!r}")
        src = t.get("source")
        for s in list(states) if src == "*" else _as_list(src):
            if s not in states:
                err(f"{where}.source", f"unknown state {s!r}")
    if errors:
        raise ConfigError(errors)
    _check_rules(data, err)
    if errors:
        raise ConfigError(errors)


def _check_rules(data: Mapping[str, Any], err: Any) -> None:
    """Check a structurally valid spec against the rules every connection keeps.

    Reachability, a way to the end from every state, the facts agreeing with
    the transitions, and the RFC 6455 rules of the closing handshake.
    """
    states: Mapping[str, Any] = data["states"]
    names = list(states)
    triples = _expand(data, names)
    allow = {n: set((states[n] or {}).get("allow") or []) for n in names}
    facts = {n: set((states[n] or {}).get("facts") or []) for n in names}
    public = {n: (states[n] or {})["public"] for n in names}
    out: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    into: dict[str, list[tuple[str, str]]] = {n: [] for n in names}
    for trigger, src, dest in triples:
        out[src].append((trigger, dest))
        into[dest].append((trigger, src))
    terminal = {n for n in names if not out[n]}

    # Every state is reachable from a state wskit starts in: the initial state,
    # or the first state of each public state (Protocol(..., state=...)).
    starts = {data["initial"]} | {next(n for n in names if public[n] == v) for v in set(public.values())}
    seen = set(starts)
    todo = list(starts)
    while todo:
        for _, nxt in out[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    for name in names:
        if name not in seen:
            err(f"states.{name}", "unreachable: no transition leads to it")
    # Every state can end: a terminal state (public closed, nothing leaves it) is reachable.
    if not terminal:
        err("states", "no terminal state (public: closed, no transition leaving it): a connection could never end")
    ends = set(terminal)
    changed = True
    while changed:
        changed = False
        for name in names:
            if name not in ends and any(dest in ends for _, dest in out[name]):
                ends.add(name)
                changed = True
    for name in names:
        if name not in ends:
            err(f"states.{name}", "dead end: no path leads from it to a terminal (closed) state")

    for name in names:
        key = f"states.{name}"
        ops, has = allow[name], facts[name]
        triggers = {t for t, _ in out[name]}
        # The transport may close at any time; once it closed, nothing more happens.
        if name in terminal:
            if public[name] != State.CLOSED.value:
                err(key, f"a terminal state (no transition leaves it) must be public: closed, not {public[name]!r}")
        elif Trigger.EOF not in triggers:
            err(key, "no eof transition leaves it: the transport can close in any state that is not terminal")
        for trigger, dest in out[name]:
            if trigger == Trigger.EOF and dest not in terminal:
                err(key, f"eof leads to {dest!r}, which is not terminal: after eof nothing more can happen")
        for trigger, src in into[name]:
            if name in terminal and trigger != Trigger.EOF:
                err(key, f"{trigger} from {src!r} enters this terminal state: only eof ends a connection")
        # The opening handshake ends one way or the other.
        if "handshake" in ops and not {Trigger.ACCEPT, Trigger.HANDSHAKE_FAILED} <= triggers:
            err(f"{key}.allow", "handshake is allowed, so both an accept and a handshake_failed transition must "
                "leave the state (the opening handshake succeeds or fails)")
        if public[name] == State.CLOSED.value and ops:
            err(f"{key}.allow", f"a closed state allows no operation, got {', '.join(sorted(ops))}")
        # The send_close operation and the send_close transitions say the same thing.
        if ("send_close" in ops) != (Trigger.SEND_CLOSE in triggers):
            err(f"{key}.allow", "send_close is allowed if and only if a send_close transition leaves the state"
                f" ({'allowed without one' if 'send_close' in ops else 'a transition without the permission'})")
        # RFC 6455 §5.5.1: after sending a Close frame, send nothing more.
        if "close_sent" in has and "send_close" in ops:
            err(f"{key}.allow", "send_close after our Close was sent: a second Close (RFC 6455 §5.5.1: "
                "the Close frame is the last frame an endpoint sends)")
        if "close_sent" in has and "send_data" in ops:
            # Only a failing state may: its Close waits in exc.to_send, written after the
            # replies to exc.events, so it is entered by fail from a state without a Close sent.
            if not into[name] or any(t != Trigger.FAIL or "close_sent" in facts[src] for t, src in into[name]):
                err(f"{key}.allow", "send_data after our Close was sent (RFC 6455 §5.5.1: no data frame "
                    "after a Close frame; only a state entered by fail before our Close went out may allow it)")
        # RFC 6455 §5.5.1: a received Close is answered with a Close.
        if ("close_received" in has and "close_sent" not in has and "failed" not in has
                and name not in terminal and "send_close" not in ops):
            err(f"{key}.allow", "the peer's Close was received and ours not sent, but send_close is not allowed "
                "(RFC 6455 §5.5.1: a Close frame is answered with a Close frame)")
        # Derived facts agree with the facts they come from.
        clean = {"close_sent", "close_received"} <= has and "failed" not in has
        if ("clean" in has) != clean:
            err(f"{key}.facts", "clean must be declared exactly when close_sent and close_received hold "
                "without failed (RFC 6455 §7.1.4: the closing handshake is complete)")
        if "answer_may_wait" in has and not ("close_received" in has and "close_sent" not in has
                                             and "failed" not in has and "send_close" in ops):
            err(f"{key}.facts", "answer_may_wait needs close_received, no close_sent, no failed "
                "and send_close allowed (there must be an answer to hold back)")
    if data["initial"] in facts and facts[data["initial"]]:
        err(f"states.{data['initial']}.facts", "the initial state cannot declare closing-handshake facts")
    # The facts agree with the transitions: a fact becomes true only through the
    # trigger that makes it happen, and never becomes false again.
    for trigger, src, dest in triples:
        key = f"states.{dest}.facts"
        for fact, setters in _MAY_SET.items():
            if fact in facts[dest] and fact not in facts[src] and trigger not in setters:
                err(key, f"declares {fact} but is reached from {src!r} by {trigger}, which cannot make it true "
                    f"(only {', '.join(sorted(str(s) for s in setters))})")
            if fact in facts[src] and fact not in facts[dest]:
                err(key, f"lacks {fact}, which holds in {src!r} before {trigger}: a fact cannot become false")
        for fact in _MUST_SET.get(trigger, ()):
            if fact not in facts[dest]:
                err(key, f"{trigger} from {src!r} leads here, so it must declare {fact}")


def load_spec(path: str | os.PathLike[str] | None = None) -> StateSpec:
    """Load and validate a state-machine spec.

    Args:
        path: a YAML file; ``None`` loads the spec shipped with wskit.

    Returns:
        The :class:`StateSpec`. Specs are cached by path: loading the same
        file twice returns the same object (and the same ``Machine``).

    Raises:
        ConfigError: if the file cannot be read, is not valid YAML, or does
            not describe a valid state machine (the message names the file
            and the key).
    """
    if path is None:
        return default_spec()
    return _load_path(str(Path(path).resolve()))


@functools.lru_cache(maxsize=32)
def _load_path(path: str) -> StateSpec:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the state-machine spec: {exc.strerror}") from None
    return _load_text(text, path)


def _load_text(text: str, source: str) -> StateSpec:
    import yaml  # loaded only when a spec is read
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return StateSpec(data, source)


@functools.cache
def default_spec() -> StateSpec:
    """Return the spec shipped with wskit (``specs/connection.yaml``)."""
    return _load_text(spec_path().read_text(encoding="utf-8"), "specs/connection.yaml")


def spec_path() -> Any:
    """Return the shipped spec as a path-like resource (``wskit/specs`` in a
    wheel, ``specs/`` in a source checkout)."""
    try:
        return resources.files("wskit.specs") / "connection.yaml"
    except (ModuleNotFoundError, NotADirectoryError, ValueError):  # a checkout without a usable install
        return Path(__file__).resolve().parent.parent / "specs" / "connection.yaml"
