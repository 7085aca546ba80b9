"""The connection state machine, loaded from ``specs/connection.yaml``.

The YAML spec declares the states, the triggers between them and, per
state, the operations allowed. :func:`load_spec` validates a spec and
builds a :class:`StateSpec`: one ``transitions.Machine`` (shared by every
connection that uses the spec) plus a precomputed :class:`StateInfo` per
state. A connection holds its current :class:`StateInfo`; the per-frame
path reads its boolean permissions and never calls ``transitions``.
Triggers (a handful per connection) go through the ``Machine``.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from transitions import Machine

from .exceptions import ConfigError

__all__ = ["State", "StateInfo", "StateSpec", "load_spec", "default_spec", "OPERATIONS", "TRIGGERS"]


class State(enum.Enum):
    """Public connection state (what ``protocol.state`` reports)."""

    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"

    def __str__(self) -> str:
        return f"State.{self.name}"


OPERATIONS = frozenset({"handshake", "receive", "send_data"})
"""Operations a state may allow."""

TRIGGERS = frozenset({"accept", "handshake_failed", "send_close", "receive_close", "fail", "eof"})
"""Triggers wskit fires; a spec may only use these."""

_STATE_KEYS = frozenset({"public", "allow", "description"})
_TRANSITION_KEYS = frozenset({"trigger", "source", "dest"})
_TOP_KEYS = frozenset({"initial", "states", "transitions"})


@dataclass(frozen=True, slots=True, eq=False)
class StateInfo:
    """Precomputed facts about one state, read on the hot path."""

    name: str
    public: State
    handshake: bool
    receive: bool
    send_data: bool
    triggers: frozenset[str]
    description: str


class StateSpec:
    """A validated state-machine spec and the ``transitions`` machine built from it.

    Attributes:
        source: where the spec came from (a path, or ``"<dict>"``).
        initial: the initial state's name.
        states: state name -> :class:`StateInfo`.
        transitions: ``(trigger, source, dest)`` triples, sources expanded.
        machine: the ``transitions.Machine`` (no models registered; events
            are fired on connection objects directly).
    """

    __slots__ = ("source", "initial", "states", "transitions", "machine", "_events", "_table")

    def __init__(self, data: Mapping[str, Any], source: str = "<dict>") -> None:
        self.source = source
        _validate(data, source)
        names = list(data["states"])
        triples: list[tuple[str, str, str]] = []
        for t in data["transitions"]:
            sources = names if t["source"] == "*" else _as_list(t["source"])
            triples.extend((t["trigger"], s, t["dest"]) for s in sources)
        self.transitions = triples
        self.initial: str = data["initial"]
        states: dict[str, StateInfo] = {}
        for name in names:
            props = data["states"][name] or {}
            allow = set(props.get("allow", []))
            states[name] = StateInfo(
                name=name,
                public=State(props["public"]),
                handshake="handshake" in allow,
                receive="receive" in allow,
                send_data="send_data" in allow,
                triggers=frozenset(trig for trig, src, _ in triples if src == name),
                description=str(props.get("description", "")),
            )
        self.states = states
        # One Machine per spec, never per connection (DESIGN.md). No callbacks
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
        # (source, trigger) -> the machine's own Transition object. A spec
        # cannot name callbacks or conditions, so executing a transition is
        # exactly the machine's set_state(dest): 0.6 us instead of the 6 us of
        # Event.trigger's generic callback and logging path (measured, see
        # docs/state-machine.md). full=True takes that full path.
        self._table: dict[tuple[str, str], Any] = {(src, trig): event.transitions[src][0]
                       for trig, event in self._events.items() for src in event.transitions}

    def fire(self, model: Any, trigger: str, *, full: bool = False) -> StateInfo:
        """Fire ``trigger`` on ``model`` (an object with a ``_sm_state`` attribute).

        Args:
            model: the connection; its ``_sm_state`` holds the state name.
            trigger: the trigger to fire.
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
        else:
            transition = self._table[(model._sm_state, trigger)]
            self.machine.set_state(transition.dest, model)  # a spec always names dest
        return self.states[model._sm_state]

    def initial_for(self, public: State) -> str:
        """Return the first internal state whose public state is ``public``."""
        for name, info in self.states.items():
            if info.public is public:
                return name
        raise ValueError(f"{self.source}: no state with public state {public.value!r}")


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _validate(data: Any, source: str) -> None:
    errors: list[str] = []

    def err(key: str, message: str) -> None:
        errors.append(f"{source}: {key}: {message}")

    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the spec must be a mapping with keys initial, states, transitions")
    for key in data:
        if key not in _TOP_KEYS:
            err(str(key), f"unknown key (expected one of {', '.join(sorted(_TOP_KEYS))})")
    states = data.get("states")
    if not isinstance(states, Mapping) or not states:
        err("states", "expected a non-empty mapping of state names")
        raise ConfigError(errors)
    public_values = {s.value for s in State}
    for name, props in states.items():
        if not isinstance(name, str) or not name.isidentifier():
            err(f"states.{name}", "state names must be identifiers")
        props = props or {}
        if not isinstance(props, Mapping):
            err(f"states.{name}", "expected a mapping with public, allow, description")
            continue
        for key in props:
            if key not in _STATE_KEYS:
                err(f"states.{name}.{key}", f"unknown key (expected one of {', '.join(sorted(_STATE_KEYS))})")
        if props.get("public") not in public_values:
            expected = ", ".join(sorted(public_values))
            err(f"states.{name}.public", f"expected one of {expected}, got {props.get('public')!r}")
        allow = props.get("allow", [])
        if not isinstance(allow, list):
            err(f"states.{name}.allow", "expected a list of operations")
        else:
            for op in allow:
                if op not in OPERATIONS:
                    err(f"states.{name}.allow", f"unknown operation {op!r} (expected {', '.join(sorted(OPERATIONS))})")
    if "closed" not in states:
        err("states", "a state named 'closed' is required (every connection must be able to end)")
    initial = data.get("initial")
    if initial not in states:
        err("initial", f"{initial!r} is not a declared state")
    transitions = data.get("transitions")
    if not isinstance(transitions, list):
        err("transitions", "expected a list of {trigger, source, dest}")
        transitions = []
    edges: dict[str, set[str]] = {name: set() for name in states}
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
        sources = list(states) if src == "*" else _as_list(src)
        for s in sources:
            if s not in states:
                err(f"{where}.source", f"unknown state {s!r}")
            elif isinstance(dest, str) and dest in states:
                edges[s].add(dest)
    if not errors:
        # Every state must be reachable from some state wskit starts in
        # (the initial state, or the first state of each public state).
        starts: set[str] = {str(initial)} | {next(n for n, p in states.items() if p["public"] == v)
                              for v in public_values if any(p["public"] == v for p in states.values())}
        seen = set(starts)
        todo = list(starts)
        while todo:
            for nxt in edges[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        for name in states:
            if name not in seen:
                err(f"states.{name}", "unreachable: no transition leads to it")
        for name in states:
            if name != "closed" and not edges[name]:
                err(f"states.{name}", "dead end: no transition leaves it (it can never reach 'closed')")
    if errors:
        raise ConfigError(errors)


def load_spec(path: str | Path | None = None) -> StateSpec:
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
