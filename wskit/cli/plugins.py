"""``wskit plugins``: the active plugins, where each comes from, the hooks they implement."""

from __future__ import annotations

import argparse
import json
import sys

from .. import hookspecs
from ..config import load
from ..exceptions import WSKitError
from ..plugin import PluginManager, check_plugin_names
from ..plugins import OPTIONAL_MODULES

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``wskit plugins`` to ``parser``."""
    parser.add_argument("--config", metavar="FILE", help="use the plugins section of this YAML configuration")
    parser.add_argument("--enable", action="append", default=[], metavar="NAME",
                        help="enable an optional built-in plugin (e.g. logging); repeatable")
    parser.add_argument("--disable", action="append", default=[], metavar="NAME",
                        help="leave out a plugin (built-in or entry point); repeatable")
    parser.add_argument("--no-entry-points", action="store_true",
                        help=f"do not load plugins from the {hookspecs.PROJECT!r} entry-point group")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _manager_from_args(args: argparse.Namespace) -> PluginManager:
    if args.config:
        manager: PluginManager = load(args.config).plugin_manager()
        return manager
    # The same rule as the YAML plugins.enable / plugins.disable lists.
    check_plugin_names(args.enable, builtin=True)
    check_plugin_names(args.disable)
    return PluginManager(enable=args.enable, disable=args.disable, entry_points=not args.no_entry_points)


def run(args: argparse.Namespace) -> int:
    """Print the active plugins, where each comes from and its hooks.

    Returns:
        0, or 1 (with the error on stderr) if the plugins cannot be loaded.
    """
    try:
        manager = _manager_from_args(args)
    except (WSKitError, OSError) as exc:
        print(f"wskit plugins: {exc}", file=sys.stderr)
        return 1
    infos = manager.info()
    order = {}
    for spec in sorted(manager.pm.hook.__dict__):
        caller = getattr(manager.pm.hook, spec)
        if spec.startswith("wskit_") and hasattr(caller, "get_hookimpls") and caller.get_hookimpls():
            order[spec] = [impl.plugin_name for impl in reversed(caller.get_hookimpls())]
    available = [n for n in OPTIONAL_MODULES if n not in manager.names() and n not in manager.disabled]
    if args.json:
        print(json.dumps({
            "plugins": [info._asdict() for info in infos],
            "call_order": order,
            "optional_not_enabled": available,
            "disabled": sorted(manager.disabled),
            "entry_points": manager.entry_points,
        }, indent=2))
        return 0
    autoload = "on" if manager.entry_points else "off"
    print(f"{len(infos)} active plugin{'' if len(infos) == 1 else 's'} (entry-point autoload: {autoload})")
    width = max((len(info.name) for info in infos), default=0)
    for info in infos:
        print(f"  {info.name:<{width}}  {info.origin}: {info.source}")
        for hook in info.hooks:
            print(f"  {'':<{width}}    {hook}")
    if order:
        print("hook call order (first called first):")
        for hook, names in order.items():
            print(f"  {hook}: {', '.join(names)}")
    if manager.disabled:
        print(f"disabled: {', '.join(sorted(manager.disabled))}")
    if available:
        print(f"optional built-ins not enabled (--enable NAME): {', '.join(available)}")
    return 0
