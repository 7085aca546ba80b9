"""The "did you mean" suggestion shared by every check of a name a user typed.

The YAML loader (unknown keys, plugin names), the plugin manager's name
check and the asyncio/sync layers' keyword check all suggest the same way.
:mod:`difflib` is imported on first use, so that ``import wskit`` stays light.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``name``, or ``None`` if none is close.

    Args:
        name: what the user typed (``"open_timout"``).
        candidates: the valid names.
    """
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``"; did you mean 'open_timeout'?"``, or ``""`` when no candidate is close.

    Args:
        name: what the user typed.
        candidates: the valid names.
    """
    match = closest(name, candidates)
    return f"; did you mean '{match}'?" if match is not None else ""
