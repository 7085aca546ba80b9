"""Diagrams of the connection state machine (``wskit diagram``).

The diagram is drawn from the same spec that drives every connection
(``specs/connection.yaml``, or another file given with ``--spec``), with
``transitions``' diagram support: a :class:`~transitions.extensions.diagrams.GraphMachine`
is built once per call (diagrams are not on the hot path) and renders

* ``mermaid``: mermaid ``stateDiagram-v2`` source; needs nothing more;
* ``dot``: Graphviz dot source; needs the ``graphviz`` Python package
  (``pip install 'wskit[diagrams]'``), not the Graphviz binaries;
* ``svg`` / ``png``: images; need the package and Graphviz's ``dot`` program.

Each state is labelled with its name, its public state and the operations
it allows; each edge with the triggers that take it. :func:`markdown`
produces ``docs/state-machine.md`` (the mermaid diagram and tables of
states and transitions), so the documentation cannot drift from the spec.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from transitions import State as _TState
from transitions.extensions.diagrams import GraphMachine

from .exceptions import ConfigError, WSKitError
from .statemachine import StateInfo, StateSpec, load_spec

__all__ = [
    "FORMATS",
    "DiagramUnavailable",
    "render",
    "markdown",
    "state_label",
    "add_diagram_arguments",
    "run_diagram",
]

FORMATS = ("mermaid", "dot", "svg", "png")
"""Output formats of :func:`render`."""

TITLE = "wskit connection state machine"

TRIGGER_DOCS: dict[str, str] = {
    "accept": "the opening handshake succeeded (client: a valid 101; server: `accept()`)",
    "handshake_failed": "the opening handshake failed or was rejected",
    "send_close": "we write a Close frame (`send_close()`)",
    "receive_close": "we read the peer's Close frame",
    "fail": "the peer violated the protocol; our Close is in `exc.to_send`",
    "eof": "the transport was closed (`receive_eof()`)",
}
"""What fires each trigger, for the documentation page."""

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
    """Return the operations ``info`` allows, in the spec's vocabulary."""
    return [op for op in ("handshake", "receive", "send_data") if getattr(info, op)]


def state_label(info: StateInfo, engine: str = "mermaid") -> str:
    """Return the diagram label of a state: name, public state, allowed operations.

    Args:
        info: the state.
        engine: ``"mermaid"`` (one line) or ``"graphviz"`` (three
            left-aligned lines).
    """
    ops = ", ".join(operations(info)) or "no operations"
    if engine == "graphviz":
        return rf"{info.name}\lstate: {info.public.value}\l{ops}"
    return f"{info.name} ({info.public.value}) {ops}"


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
    state, allowed operations, triggers accepted, description) and a table
    of the transitions.
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
        "internal state maps to one public `State` (what `protocol.state` reports) and allows",
        "a set of operations: `handshake` (parse the opening handshake), `receive` (parse",
        "frames), `send_data` (`send_text`, `send_binary`, `send_ping`, `send_pong`). The",
        "protocol reads these permissions on every call; the spec is the only place they are",
        "written. Render the diagram in other formats with",
        "`wskit diagram --format mermaid|dot|svg|png [-o FILE] [--spec FILE]`.",
        "",
        "```mermaid",
        str(render(loaded, "mermaid")).rstrip("\n"),
        "```",
        "",
        "## States",
        "",
        f"The initial state is `{loaded.initial}`.",
        "",
        "| state | public state | allowed operations | triggers accepted | description |",
        "|---|---|---|---|---|",
    ]
    for name, info in loaded.states.items():
        ops = ", ".join(f"`{op}`" for op in operations(info)) or "none"
        triggers = ", ".join(f"`{t}`" for t in sorted(info.triggers)) or "none"
        out.append(f"| `{name}` | `{info.public.value}` | {ops} | {triggers} | {info.description} |")
    out += [
        "",
        "## Transitions",
        "",
        "| trigger | from | to |",
        "|---|---|---|",
    ]
    for trigger, src, dest in loaded.transitions:
        out.append(f"| `{trigger}` | `{src}` | `{dest}` |")
    used = list(dict.fromkeys(t for t, _, _ in loaded.transitions))
    out += ["", "## Triggers", "", "| trigger | fired when |", "|---|---|"]
    for trigger in used:
        out.append(f"| `{trigger}` | {TRIGGER_DOCS.get(trigger, '')} |")
    out += ["", *EXECUTION_NOTES, ""]
    return "\n".join(out)


EXECUTION_NOTES = [
    "## How the spec is executed",
    "",
    "`wskit.statemachine.load_spec` validates the YAML (unknown keys, states, operations and",
    "triggers; unreachable states; dead ends; a missing `closed`) and builds **one**",
    "`transitions.Machine` per spec, shared by every connection that uses it; no connection",
    "is registered as a model (a Machine per connection costs ~120 us and 11-22 KB).",
    "",
    "- Per call and per frame, the protocol only reads its current state's precomputed",
    "  permissions (`StateInfo.receive`, `.send_data`, `.triggers`): attribute lookups,",
    "  never a `transitions` call.",
    "- A trigger (a handful per connection) resolves the machine's own `Transition`",
    "  object for `(state, trigger)` and applies it with `Machine.set_state`. A spec cannot",
    "  name callbacks or conditions, so that is all `Event.trigger` would do; it costs",
    "  0.6 us instead of 6.3 us measured for `Event.trigger` (whose generic callback and",
    "  logging path dominated the connection lifecycle). `StateSpec.fire(..., full=True)`",
    "  takes the complete `Event.trigger` path, and a test checks both paths agree.",
    "- Pass `spec=PATH` to any protocol class to run a modified copy of the spec.",
]


# -- command line ------------------------------------------------------------------


def add_diagram_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit diagram`` options to ``parser``."""
    parser.add_argument("--spec", metavar="FILE", help="state-machine spec (default: the one shipped with wskit)")
    parser.add_argument("--format", "-f", choices=FORMATS, default="mermaid", help="output format (default: mermaid)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    parser.add_argument("--docs", action="store_true",
                        help="write the documentation page (docs/state-machine.md) instead of a diagram")


def run_diagram(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``wskit diagram`` as a program (``python -m wskit.diagram``)."""
    parser = argparse.ArgumentParser(prog="wskit diagram", description="render the connection state machine")
    add_diagram_arguments(parser)
    return run_diagram(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
