#!/usr/bin/env python3
"""Summarize Autobahn|Testsuite reports (``index.json``) per testee.

Usage::

    .venv/bin/python tests/compliance/summarize.py [PATH ...] [--allow IDS] [--markdown]

Each PATH is an ``index.json`` or a directory searched recursively for
them (default: ``build/compliance``). For every agent (testee) it prints
the counts of each ``behavior`` (OK, NON-STRICT, INFORMATIONAL,
UNIMPLEMENTED, FAILED) and the number of cases whose ``behaviorClose`` is
not OK/INFORMATIONAL, then lists each problem case with the suite's
one-line description and its verdict.

A *problem case* has a ``behavior`` of FAILED, UNIMPLEMENTED or NON-STRICT,
or a ``behaviorClose`` other than OK/INFORMATIONAL (FAILED, WRONG CODE,
UNCLEAN, FAILED BY CLIENT). Exit code: 0 when no problem case is left
after ``--allow``, 1 otherwise (also when a ``run.json`` beside the
``index.json`` says cases are missing or the run timed out or crashed),
2 when no report was found.
"""

from __future__ import annotations

import argparse
import fnmatch
import html
import json
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_PATH = ROOT / "build" / "compliance"

BEHAVIORS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED")
GOOD_BEHAVIORS = frozenset({"OK", "INFORMATIONAL"})
GOOD_CLOSE = frozenset({"OK", "INFORMATIONAL"})


@dataclass
class CaseResult:
    """One case's verdict for one agent, as ``index.json`` records it."""

    case_id: str
    behavior: str
    behavior_close: str
    remote_close_code: int | None
    duration: int | None
    report: Path | None

    @property
    def problem(self) -> bool:
        """Whether this case counts against the testee."""
        return self.behavior not in GOOD_BEHAVIORS or self.behavior_close not in GOOD_CLOSE


@dataclass
class AgentReport:
    """All results for one agent, plus the runner's ``run.json`` if present."""

    agent: str
    source: Path
    cases: dict[str, CaseResult] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)

    def run_problem(self) -> str | None:
        """Return why the run itself is incomplete, or None."""
        status = self.run.get("status", "ok")
        messages = []
        if status != "ok":
            messages.append(f"run {status}: {self.run.get('message', '')}".rstrip(": "))
        expected = self.run.get("expected_cases")
        if isinstance(expected, int) and len(self.cases) < expected:
            messages.append(f"{expected - len(self.cases)} of {expected} cases have no result")
        return "; ".join(messages) or None


def case_sort_key(case_id: str) -> tuple[int, ...]:
    """Sort ``"9.10.2"`` after ``"9.2.1"``."""
    return tuple(int(p) if p.isdigit() else 0 for p in case_id.split("."))


def find_indexes(paths: Sequence[Path]) -> list[Path]:
    """Return every ``index.json`` named by or found under ``paths``."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(path.rglob("index.json")))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such report file or directory: {path}")
    return found


def load_reports(indexes: Sequence[Path]) -> list[AgentReport]:
    """Parse ``index.json`` files (and the ``run.json`` beside each)."""
    reports: list[AgentReport] = []
    for index in indexes:
        try:
            data = json.loads(index.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{index}: not a readable Autobahn index.json: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{index}: expected a JSON object of agents, got {type(data).__name__}")
        run_path = index.parent / "run.json"
        run = json.loads(run_path.read_text()) if run_path.exists() else {}
        for agent, cases in sorted(data.items()):
            report = AgentReport(agent, index, run=run)
            for case_id, entry in cases.items():
                reportfile = entry.get("reportfile")
                report.cases[case_id] = CaseResult(
                    case_id=case_id,
                    behavior=str(entry.get("behavior")),
                    behavior_close=str(entry.get("behaviorClose")),
                    remote_close_code=entry.get("remoteCloseCode"),
                    duration=entry.get("duration"),
                    report=index.parent / reportfile if reportfile else None,
                )
            reports.append(report)
    return reports


def is_allowed(agent: str, case_id: str, allow: Sequence[str]) -> bool:
    """Whether ``--allow`` accepts this case (``ID``/pattern or ``AGENT:ID``)."""
    for pattern in allow:
        agent_pattern, sep, case_pattern = pattern.rpartition(":")
        if sep and not fnmatch.fnmatchcase(agent, agent_pattern):
            continue
        if fnmatch.fnmatchcase(case_id, case_pattern):
            return True
    return False


_TAG = re.compile(r"<[^>]+>")


def one_line(text: str, limit: int = 110) -> str:
    """Collapse a report's HTML-ish text to one plain line of at most ``limit`` chars."""
    plain = " ".join(html.unescape(_TAG.sub(" ", text)).split())
    return plain if len(plain) <= limit else plain[: limit - 3] + "..."


def case_details(case: CaseResult) -> tuple[str, str]:
    """Return (description, verdict text) from a case's own JSON report."""
    if case.report is None or not case.report.exists():
        return "", ""
    try:
        data = json.loads(case.report.read_text())
    except (OSError, ValueError):
        return "", ""
    verdict = str(data.get("result", ""))
    if case.behavior_close not in GOOD_CLOSE:
        verdict += " / close: " + str(data.get("resultClose", ""))
    return one_line(str(data.get("description", ""))), one_line(verdict, 160)


def count_row(report: AgentReport) -> dict[str, int]:
    """Return the behavior counts and the number of bad closes."""
    counts = Counter(c.behavior for c in report.cases.values())
    row = {b: counts.get(b, 0) for b in BEHAVIORS}
    row["other"] = sum(n for b, n in counts.items() if b not in BEHAVIORS)
    row["close not OK"] = sum(1 for c in report.cases.values() if c.behavior_close not in GOOD_CLOSE)
    return row


def print_table(reports: Sequence[AgentReport], out: TextIO, markdown: bool) -> None:
    """Print one row of counts per agent."""
    headers = ["testee", "cases", *BEHAVIORS, "close not OK", "time (s)"]
    rows = []
    for report in reports:
        counts = count_row(report)
        seconds = report.run.get("seconds")
        rows.append(
            [
                report.agent,
                str(len(report.cases)),
                *(str(counts[b]) for b in BEHAVIORS),
                str(counts["close not OK"]),
                "" if seconds is None else str(seconds),
            ]
        )
    if markdown:
        out.write("| " + " | ".join(headers) + " |\n")
        out.write("|" + "|".join("---" for _ in headers) + "|\n")
        for row in rows:
            out.write("| " + " | ".join(row) + " |\n")
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")


def summarize(
    reports: Sequence[AgentReport],
    allow: Sequence[str],
    out: TextIO,
    *,
    details: bool = True,
    markdown: bool = False,
) -> int:
    """Print the summary of ``reports``; return the exit code (0 or 1)."""
    print_table(reports, out, markdown)
    status = 0
    for report in reports:
        problems = sorted((c for c in report.cases.values() if c.problem), key=lambda c: case_sort_key(c.case_id))
        blocking = [c for c in problems if not is_allowed(report.agent, c.case_id, allow)]
        run_problem = report.run_problem()
        if blocking or run_problem:
            status = 1
        if not problems and not run_problem:
            continue
        out.write(f"\n{report.agent}: {len(blocking)} problem case(s)")
        if len(problems) > len(blocking):
            out.write(f", {len(problems) - len(blocking)} allowed")
        out.write(f"  [{report.source.parent}]\n")
        if run_problem:
            out.write(f"  ! {run_problem}\n")
        for case in problems:
            mark = "allowed " if case not in blocking else ""
            line = f"  {mark}{case.case_id:<9} behavior={case.behavior:<13} close={case.behavior_close}"
            if case.remote_close_code is not None:
                line += f" (code {case.remote_close_code})"
            out.write(line + "\n")
            if details:
                description, verdict = case_details(case)
                if description:
                    out.write(f"      {description}\n")
                if verdict:
                    out.write(f"      -> {verdict}\n")
    out.write("\n" + ("compliance: OK\n" if status == 0 else "compliance: PROBLEMS (exit 1)\n"))
    # One plain closing line, like a test runner's: a case passes when it is
    # OK or INFORMATIONAL (or allowed) with a clean close.
    total = sum(len(r.cases) for r in reports)
    failed = sum(1 for r in reports for c in r.cases.values()
                 if c.problem and not is_allowed(r.agent, c.case_id, allow))
    out.write(f"compliance: {total - failed} passed, {failed} failed\n")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "paths", nargs="*", type=Path, help=f"index.json files or directories (default: {DEFAULT_PATH})"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="IDS",
        help="comma-separated accepted case ids or patterns, optionally AGENT:ID (repeatable)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-details", action="store_true", help="do not read per-case reports for descriptions")
    args = parser.parse_args(argv)
    allow = [p.strip() for value in args.allow for p in value.split(",") if p.strip()]
    try:
        reports = load_reports(find_indexes(args.paths or [DEFAULT_PATH]))
    except (OSError, ValueError) as exc:
        print(f"summarize: error: {exc}", file=sys.stderr)
        return 2
    if not reports:
        where = ", ".join(str(p) for p in args.paths or [DEFAULT_PATH])
        print(f"summarize: error: no index.json found under {where}", file=sys.stderr)
        return 2
    return summarize(reports, allow, sys.stdout, details=not args.no_details, markdown=args.markdown)


if __name__ == "__main__":
    sys.exit(main())
