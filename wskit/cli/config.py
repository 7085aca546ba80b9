"""``wskit config``: check a YAML configuration file, print the reference page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ..config import load, reference_markdown
from ..exceptions import ConfigError

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``wskit config`` subcommands (``check FILE``, ``docs``) to ``parser``."""
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION")
    check = sub.add_parser("check", help="validate a configuration file and print the effective settings")
    check.add_argument("file", help="the YAML configuration file")
    docs = sub.add_parser("docs", help="print the configuration reference (docs/configuration.md)")
    docs.add_argument("-o", "--output", help="write to this file instead of standard output")


def run(args: argparse.Namespace) -> int:
    """Run ``wskit config``; return the exit status (1 for an invalid file)."""
    command = getattr(args, "config_command", None)
    if command == "check":
        try:
            config = load(args.file)
        except ConfigError as exc:
            for message in exc.errors:
                print(message, file=sys.stderr)
            return 1
        print("ok")
        print(yaml.safe_dump(config.as_dict(), sort_keys=False, default_flow_style=False), end="")
        return 0
    if command == "docs":
        text = reference_markdown()
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    print("usage: wskit config {check FILE | docs [-o FILE]}", file=sys.stderr)
    return 2
