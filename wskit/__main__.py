"""The ``wskit`` command line (also ``python -m wskit``).

Subcommands are implemented next to what they drive; this module only
dispatches. Each provider module exposes ``add_arguments(parser)`` and
``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> (module providing add_arguments/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("wskit.demo", "show a client and a server talking (what `make run` starts)"),
    "serve": ("wskit.cli_io", "run an echo server"),
    "connect": ("wskit.cli_io", "interactive client: type to send, Ctrl-D to close"),
    "diagram": ("wskit.diagram", "render the connection state machine"),
    "config": ("wskit.config", "work with YAML configuration files (config check FILE)"),
    "plugins": ("wskit.plugin", "list the active plugins and the hooks they implement"),
}


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="wskit", description="WebSocket toolkit: servers, clients, diagrams.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a part not installed/built: leave the command out
            continue
        adder = getattr(module, f"add_{name}_arguments", None) or getattr(module, "add_arguments", None)
        runner = getattr(module, f"run_{name}", None) or getattr(module, "run", None)
        if adder is None or runner is None:
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        adder(p)
        p.set_defaults(_run=runner)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
