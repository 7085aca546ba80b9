"""The ``wskit`` command line (also ``python -m wskit``), the top layer of wskit.

Each subcommand lives in a module of this package that provides
``add_arguments(parser)`` and ``run(args) -> int``; :func:`main` builds the parser from :data:`COMMANDS`
and dispatches. Nothing below this package imports it.

Errors reach the user as one line on standard error and an exit status,
never as a traceback: 1 for a failure, 2 for a usage error, 130 after
Ctrl-C (a server stopped by Ctrl-C exits with 0: that is how it is
stopped), and 141 (128 + SIGPIPE, as for other Unix tools) when the reader
of standard output went away, as in ``wskit config docs | head``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..defaults import VERSION
from ..exceptions import WSKitError

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("wskit.cli.demo", "show a client and a server talking (what `make run` starts)"),
    "serve": ("wskit.cli.serve", "run an echo server"),
    "connect": ("wskit.cli.connect", "interactive client: type to send, Ctrl-D to close"),
    "diagram": ("wskit.cli.diagram", "render the connection state machine"),
    "config": ("wskit.cli.config", "work with YAML configuration files (config check FILE, config docs)"),
    "plugins": ("wskit.cli.plugins", "list the active plugins and the hooks they implement"),
}
"""Subcommand -> (module providing ``add_arguments``/``run``, one-line help)."""

_EXIT_INTERRUPTED = 130  # 128 + SIGINT
_EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="wskit", description="WebSocket toolkit: servers, clients, diagrams.")
    parser.add_argument("-V", "--version", action="version", version=f"wskit {VERSION}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def _stdout_gone() -> None:
    """Point standard output at /dev/null so that the final flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (stdout replaced): nothing to flush to
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status = int(run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at exit
    except KeyboardInterrupt:
        return _EXIT_INTERRUPTED
    except BrokenPipeError:
        _stdout_gone()
        return _EXIT_BROKEN_PIPE
    except (WSKitError, OSError) as exc:  # what a subcommand did not report itself
        print(f"wskit {args.command}: {exc}", file=sys.stderr)
        return 1
    return status
