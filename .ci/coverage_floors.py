"""Fail when branch coverage falls under the project's floors.

Run by ``make test`` after the measured suite (``coverage combine`` done):
every module of the sans-I/O core must be covered completely (lines and
branches), every other module of the package at least ``REST_FLOOR`` percent.
Code that cannot be reached is removed, not excluded: there is no
``pragma: no cover`` to hide behind (this script refuses one).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The sans-I/O core: the modules that turn bytes into events and calls into
# bytes (they import no configuration, I/O or command line; tests/test_layering.py
# checks that this list and its own stay the same).
CORE = (
    "wskit/_headermap.py", "wskit/_protocol.py", "wskit/auth.py", "wskit/broadcast.py", "wskit/client.py",
    "wskit/defaults.py", "wskit/duties.py", "wskit/events.py", "wskit/exceptions.py", "wskit/extensions/base.py",
    "wskit/extensions/permessage_deflate.py", "wskit/frames.py", "wskit/handshake.py", "wskit/headers.py",
    "wskit/http11.py", "wskit/http2.py", "wskit/mask.py", "wskit/protocol.py", "wskit/proxy.py",
    "wskit/reconnect.py", "wskit/redirects.py", "wskit/routing.py", "wskit/server.py", "wskit/statemachine.py",
)
CORE_FLOOR = 100.0
REST_FLOOR = 95.0


def main() -> int:
    """Check the floors against the combined coverage data; print what falls short."""
    pragmas = sorted(
        f"{path.relative_to(ROOT)}:{number}"
        for path in (ROOT / "wskit").rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "pragma: no cover" in line
    )
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "coverage", "json", "-q", "-o", "-"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout)
    files = report["files"]
    short = []
    for name in sorted(files):
        summary = files[name]["summary"]
        percent = summary["percent_covered"]
        floor = CORE_FLOOR if name in CORE else REST_FLOOR
        if percent < floor:
            missing = files[name]["missing_lines"]
            short.append(f"  {name}: {percent:.1f}% < {floor:.0f}% (lines not run: {_ranges(missing)}; "
                         f"branches not taken: {summary['missing_branches']})")
    absent = [name for name in CORE if name not in files and (ROOT / name).exists()]
    if pragmas:
        print("coverage floors: code excluded with a pragma instead of removed or tested:", *pragmas, sep="\n  ")
    if absent:
        print("coverage floors: core modules never measured:", *absent, sep="\n  ")
    if short:
        print("coverage floors: modules under their floor (core 100%, the rest 95%):", *short, sep="\n")
    if pragmas or absent or short:
        return 1
    total = report["totals"]["percent_covered"]
    print(f"coverage floors: met (total {total:.1f}%; core {CORE_FLOOR:.0f}%, every other module >= {REST_FLOOR:.0f}%)")
    return 0


def _ranges(lines: list[int]) -> str:
    spans: list[str] = []
    for line in lines:
        if spans and line == int(spans[-1].split("-")[-1]) + 1:
            spans[-1] = f"{spans[-1].split('-')[0]}-{line}"
        else:
            spans.append(str(line))
    return ", ".join(spans) or "none"


if __name__ == "__main__":
    sys.exit(main())
