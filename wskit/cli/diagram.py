"""Diagrams of the connection state machine (``wskit diagram``).

The diagram is drawn from the same spec that drives every connection
(``specs/connection.yaml``, or another file given with ``--spec``), with
``transitions``' diagram support: a :class:`~transitions.extensions.diagrams.GraphMachine`
is built once per call (diagrams are not on the hot path) and renders

* ``mermaid``: mermaid ``stateDiagram-v2`` source; needs nothing more;
* ``dot``: Graphviz dot source; needs the ``graphviz`` Python package
  (``pip install 'wskit[diagrams]'``), not the Graphviz binaries;
* ``svg`` / ``png``: images; need the package and Graphviz's ``dot`` program.

Each state is labelled with its name, its public state, the operations it
allows and the closing-handshake facts that hold in it; each edge with the
triggers that take it. :func:`markdown` produces ``docs/state-machine.md``
(the mermaid diagram, tables of the states, their facts and the
transitions, and the vocabulary from :mod:`wskit.statemachine`), so the
documentation cannot drift from the spec.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from transitions import State as _TState
from transitions.extensions.diagrams import GraphMachine

from ..exceptions import ConfigError, WSKitError
from ..statemachine import FACTS, OPERATIONS, StateInfo, StateSpec, Trigger, load_spec

__all__ = [
    "FORMATS",
    "DiagramUnavailable",
    "render",
    "markdown",
    "facts",
    "operations",
    "state_label",
    "add_arguments",
    "run",
]

FORMATS = ("mermaid", "dot", "svg", "png")
"""Output formats of :func:`render`."""

TITLE = "wskit connection state machine"

_NEED_DOT = "install Graphviz (apt-get install graphviz) for svg/png, or use --format mermaid/dot"
_NEED_PACKAGE = ("the {fmt} format needs the graphviz Python package: pip install 'wskit[diagrams]' "
                 "(or pip install graphviz), or use --format mermaid")


class DiagramUnavailable(WSKitError):
    """A diagram format needs software that is not installed (the message says what)."""


class _LabelledState(_TState):
    """A ``transitions`` state that carries a diagram label."""

    def __init__(self, *args: Any, label: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label = label or self.name


class _Machine(GraphMachine):  # type: ignore[misc]
    state_cls = _LabelledState


class _Model:
    """The one model the diagram machine draws."""


def operations(info: StateInfo) -> list[str]:
    """Return the operations ``info`` allows, in the spec's vocabulary (:data:`~wskit.statemachine.OPERATIONS`)."""
    return [op for op in OPERATIONS if getattr(info, op)]


def facts(info: StateInfo) -> list[str]:
    """Return the closing-handshake facts that hold in ``info`` (:data:`~wskit.statemachine.FACTS`)."""
    return [fact for fact in FACTS if getattr(info, fact)]


def state_label(info: StateInfo, engine: str = "mermaid") -> str:
    """Return the diagram label of a state: name, public state, allowed operations, facts.

    Args:
        info: the state.
        engine: ``"mermaid"`` (one line) or ``"graphviz"`` (left-aligned
            lines; the facts on a fourth line when there are any).
    """
    ops = ", ".join(operations(info)) or "no operations"
    held = ", ".join(facts(info))
    if engine == "graphviz":
        return rf"{info.name}\lstate: {info.public.value}\l{ops}" + (rf"\l{held}" if held else "")
    return f"{info.name} ({info.public.value}) {ops}" + (f" [{held}]" if held else "")


def _graph(spec: StateSpec, engine: Literal["mermaid", "graphviz"]) -> Any:
    model = _Model()
    machine = _Machine(
        model=model,
        states=[{"name": name, "label": state_label(info, engine)} for name, info in spec.states.items()],
        transitions=[{"trigger": t, "source": s, "dest": d} for t, s, d in spec.transitions],
        initial=spec.initial,
        auto_transitions=False,
        graph_engine=engine,
        # transitions writes the mermaid title as front matter: make it `title: ...`.
        title=f"title: {TITLE}" if engine == "mermaid" else TITLE,
        show_state_attributes=False,
    )
    graph = machine.model_graphs[id(model)]
    graph.reset_styling()  # no "active" state: this is the whole machine, not one connection
    return graph.get_graph()


def _spec(spec: StateSpec | str | Path | None) -> StateSpec:
    return spec if isinstance(spec, StateSpec) else load_spec(spec)


def render(spec: StateSpec | str | Path | None = None, fmt: str = "mermaid") -> str | bytes:
    """Render the state machine.

    Args:
        spec: a loaded spec, the path of a spec file, or ``None`` for the
            spec shipped with wskit.
        fmt: one of :data:`FORMATS`.

    Returns:
        Source text for ``mermaid`` and ``dot``, image bytes for ``svg`` and
        ``png``.

    Raises:
        ConfigError: if the spec is invalid (every problem, with the file).
        DiagramUnavailable: if ``fmt`` needs software that is missing.
        ValueError: for an unknown ``fmt``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown diagram format {fmt!r} (expected one of {', '.join(FORMATS)})")
    loaded = _spec(spec)
    if fmt == "mermaid":
        source = _graph(loaded, "mermaid").source
        # Drop styling (nothing is highlighted) and trailing blanks.
        lines = [line.rstrip() for line in source.splitlines()
                 if not line.lstrip().startswith(("classDef ", "Class "))]
        return "\n".join(line for i, line in enumerate(lines) if line or (i and lines[i - 1])) + "\n"
    if importlib.util.find_spec("graphviz") is None:
        raise DiagramUnavailable(_NEED_PACKAGE.format(fmt=fmt))
    graph = _graph(loaded, "graphviz")
    if fmt == "dot":
        return str(graph.source)
    if shutil.which("dot") is None:
        raise DiagramUnavailable(_NEED_DOT)
    data: bytes = graph.pipe(format=fmt)
    return data


def markdown(spec: StateSpec | str | Path | None = None) -> str:
    """Return the documentation page of a spec (``docs/state-machine.md``).

    The page holds the mermaid diagram, a table of the states (public
    state, allowed operations, triggers accepted, description), a table of
    the closing-handshake facts per state, a table of the transitions and
    the vocabulary (operations, facts, triggers) with what each means.
    """
    loaded = _spec(spec)
    source = "specs/connection.yaml" if spec is None else loaded.source
    out = [
        "# The connection state machine",
        "",
        "<!-- Generated by `wskit diagram --docs -o docs/state-machine.md` from "
        f"{source}; do not edit by hand (a test fails when this page is stale). -->",
        "",
        "Every connection moves through the states declared in `specs/connection.yaml`. Each",
        "internal state maps to one public `State` (what `protocol.state` reports), allows a",
        "set of operations and declares the facts of the closing handshake that hold in it",
        "(a Close sent, a Close received, failed, clean, ...). The protocol reads these",
        "permissions and facts from its current state; the spec is the only place they are",
        "written, and no state name appears in the code. Render the diagram in other formats",
        "with `wskit diagram --format mermaid|dot|svg|png [-o FILE] [--spec FILE]`.",
        "",
        "```mermaid",
        str(render(loaded, "mermaid")).rstrip("\n"),
        "```",
        "",
        "## States",
        "",
        f"The initial state is `{loaded.initial}`. A terminal state (no transition leaves it) is",
        "where a connection ends once the transport closed.",
        "",
        "| state | public state | allowed operations | triggers accepted | description |",
        "|---|---|---|---|---|",
    ]
    for name, info in loaded.states.items():
        ops = ", ".join(f"`{op}`" for op in operations(info)) or "none"
        triggers = ", ".join(f"`{t}`" for t in sorted(info.triggers)) or "none"
        out.append(f"| `{name}` | `{info.public.value}` | {ops} | {triggers} | {info.description} |")
    side = loaded.closes_transport_first
    out += [
        "",
        "## Closing-handshake facts",
        "",
        "What the protocol reports in each state (`Protocol.close_sent`, `.close_received`,",
        "`.close_answer_may_wait`, `.failure`, `.closed_cleanly`, `.may_send_close`), read from",
        "the spec. Once the closing handshake is over or the connection failed, the side named",
        f"by `closes_transport_first` (here: `{side}`, RFC 6455 §7.1.1) closes the TCP connection",
        "first and the other side waits for it (`Protocol.closes_transport_first`).",
        "",
        "| state | " + " | ".join(f"`{fact}`" for fact in FACTS) + " | `send_close` | terminal |",
        "|---|" + "---|" * (len(FACTS) + 2),
    ]
    for name, info in loaded.states.items():
        cells = ["yes" if getattr(info, fact) else "" for fact in FACTS]
        cells += ["yes" if info.send_close else "", "yes" if info.terminal else ""]
        out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Transitions",
        "",
        "| trigger | from | to |",
        "|---|---|---|",
    ]
    for trigger, src, dest in loaded.transitions:
        out.append(f"| `{trigger}` | `{src}` | `{dest}` |")
    out += ["", "## Vocabulary", "", "Defined once in `wskit.statemachine`; a spec may use no other name.", "",
            "| operation (`allow:`) | permits |", "|---|---|"]
    out += [f"| `{op}` | {doc} |" for op, doc in OPERATIONS.items()]
    out += ["", "| fact (`facts:`) | holds when |", "|---|---|"]
    out += [f"| `{fact}` | {doc} |" for fact, doc in FACTS.items()]
    out += ["", "| trigger | fired when |", "|---|---|"]
    out += [f"| `{trigger.value}` | {trigger.doc} |" for trigger in Trigger]
    out += ["", *VALIDATION_NOTES, "", *EXECUTION_NOTES, ""]
    return "\n".join(out)


VALIDATION_NOTES = [
    "## What a spec must keep",
    "",
    "`wskit.statemachine.load_spec` refuses a spec that breaks one of these rules, with a",
    "`ConfigError` naming the file, the state (`FILE: states.NAME: ...`) and the rule:",
    "",
    "- only known keys, operations, facts and triggers; no callbacks or conditions;",
    "- every state reachable, and a path from every state to a terminal state (public",
    "  `closed`, no transition leaving it); `eof` leaves every other state and leads to a",
    "  terminal state, and only `eof` enters one;",
    "- no data (`send_data`) after our Close was written, and no second Close (RFC 6455",
    "  §5.5.1); a failing state, entered by `fail` before our Close went out, may send the",
    "  replies to `exc.events` that go before `exc.to_send`;",
    "- a received Close is answered (`send_close` allowed) unless the connection failed;",
    "- `send_close` in `allow` exactly when a `send_close` transition leaves the state;",
    "- a state that allows `handshake` has both an `accept` and a `handshake_failed` transition;",
    "- the facts agree with the transitions: `close_sent` becomes true only by `send_close`",
    "  or `fail`, `close_received` only by `receive_close`, `failed` only by `fail` or",
    "  `handshake_failed`; each of these triggers leads to a state declaring its fact; a fact",
    "  never becomes false; `clean` is declared exactly where `close_sent` and",
    "  `close_received` hold without `failed` (RFC 6455 §7.1.4); `answer_may_wait` only where",
    "  an answer to the peer's Close is still to be sent.",
    "",
    "No state name is written in the code, so a copy of the spec with every state renamed",
    "behaves exactly like the original.",
]

EXECUTION_NOTES = [
    "## How the spec is executed",
    "",
    "`load_spec` builds **one** `transitions.Machine` per spec, shared by every connection",
    "that uses it; no connection is registered as a model (a Machine per connection costs",
    "~120 us and 11-22 KB).",
    "",
    "- Per call and per frame, the protocol only reads its current state's precomputed",
    "  permissions and facts (`StateInfo.receive`, `.send_data`, `.close_received`, ...):",
    "  attribute lookups, never a `transitions` call.",
    "- A trigger (a handful per connection) looks up the destination of the machine's own",
    "  `Transition` for `(state, trigger)` (resolved once, with its `StateInfo`) and applies",
    "  it with `Machine.set_state`. A spec cannot name callbacks or conditions, so that is",
    "  all `Event.trigger` would do; it costs 0.3 us instead of 6.3 us measured for",
    "  `Event.trigger` (whose generic callback and logging path dominated the connection",
    "  lifecycle). `StateSpec.fire(..., full=True)` takes the complete `Event.trigger`",
    "  path, and a test checks both paths agree.",
    "- Pass `spec=PATH` to any protocol class, or to `connect`/`serve` of `wskit.asyncio`",
    "  and `wskit.sync`, to run a modified copy of the spec.",
]


# -- command line ------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit diagram`` options to ``parser``."""
    parser.add_argument("--spec", metavar="FILE", help="state-machine spec (default: the one shipped with wskit)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="mermaid", help="output format (default: mermaid)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    parser.add_argument("--docs", action="store_true",
                        help="write the documentation page (docs/state-machine.md) instead of a diagram")


def run(args: argparse.Namespace) -> int:
    """Run ``wskit diagram``; return the exit status (1 on an invalid spec or a missing tool)."""
    try:
        result: str | bytes = markdown(args.spec) if args.docs else render(args.spec, args.format)
    except ConfigError as exc:
        for message in exc.errors:
            print(f"error: {message}", file=sys.stderr)
        return 1
    except DiagramUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output:
        path = Path(args.output)
        if isinstance(result, bytes):
            path.write_bytes(result)
        else:
            path.write_text(result, encoding="utf-8")
    elif isinstance(result, bytes):
        sys.stdout.buffer.write(result)
        sys.stdout.flush()
    else:
        sys.stdout.write(result)
    return 0

