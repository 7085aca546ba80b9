#!/usr/bin/env python3
"""Run Autobahn|Testsuite against wskit's testee programs and summarize.

Usage (from the repository root, with the project venv)::

    .venv/bin/python tests/compliance/run.py                    # every wskit testee, all cases
    .venv/bin/python tests/compliance/run.py --ci               # the quick CI selection
    .venv/bin/python tests/compliance/run.py --testee sansio_server --cases '1.*,2.*'
    .venv/bin/python tests/compliance/run.py --testee websockets_server --testee websockets_client

Server testees (``testees/*_server.py``) are started on a free 127.0.0.1
port and tested by ``wstest -m fuzzingclient``; client testees
(``testees/*_client.py``) run against ``wstest -m fuzzingserver``. Each
testee gets its own report directory ``<outdir>/<testee>/`` (``index.json``,
per-case JSON and HTML reports, ``run.json`` with the run's metadata and
the logs of both programs). The summary at the end is ``summarize.py``'s;
the exit code is non-zero when a testee has a problem case (see there).

``wstest`` runs only on Python 2.7: ``setup.sh`` creates ``.autobahn/``
for it and this runner calls it first (a no-op when up to date).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TESTEES_DIR = HERE / "testees"
CONFIG_DIR = HERE / "config"
DEFAULT_OUTDIR = ROOT / "build" / "compliance"
DEFAULT_VENV = ROOT / ".autobahn"

#: Testees that exercise another library (python-websockets): they prove the
#: harness and give a baseline, and run only when named with ``--testee``.
REFERENCE_PREFIX = "websockets_"
#: ``--ci``: groups 1-10 for every testee ...
CI_CASES = [f"{group}.*" for group in range(1, 11)]
#: ... plus a slice of the permessage-deflate groups for these testees.
CI_EXTRA_CASES = {"asyncio_server": ["12.1.*", "13.1.*"], "uvicorn_server": ["12.1.*", "13.1.*"]}

sys.path.insert(0, str(HERE))
import summarize  # noqa: E402


class HarnessError(Exception):
    """The harness itself could not run a testee (not a testee's failure)."""


@dataclass(frozen=True)
class Testee:
    """A testee program: ``kind`` is ``"server"`` or ``"client"``."""

    name: str
    kind: str
    path: Path


def discover_testees() -> dict[str, Testee]:
    """Return the testee programs in ``testees/``, by name."""
    found: dict[str, Testee] = {}
    for path in sorted(TESTEES_DIR.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = path.stem
        if name.endswith("_server"):
            found[name] = Testee(name, "server", path)
        elif name.endswith("_client"):
            found[name] = Testee(name, "client", path)
    return found


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``.

    Raises:
        HarnessError: ``proc`` exited first, or ``timeout`` seconds passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(
                f"{proc.args!r} exited with code {proc.returncode} before listening on "
                f"port {port}; its log ({log}) ends with:\n{tail(log)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s ({log})")


def tail(path: Path, lines: int = 15) -> str:
    """Return the last ``lines`` lines of a log file (or a note that it is empty)."""
    try:
        text = path.read_text(errors="replace").rstrip()
    except OSError:
        return "  (no log)"
    return "\n".join("  " + line for line in text.splitlines()[-lines:]) or "  (empty log)"


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spawn(cmd: Sequence[str], log: IO[bytes], cwd: Path, *, testee: bool) -> subprocess.Popen[bytes]:
    """Start ``cmd`` with its output going to ``log`` and no stdin."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if testee:
        # Testees import the working tree's wskit, whatever the venv's install says.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    else:
        env.pop("PYTHONPATH", None)  # wstest runs on Python 2.7
    return subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)


def load_template(name: str) -> dict[str, Any]:
    """Load a wstest spec template from ``config/``."""
    data: dict[str, Any] = json.loads((CONFIG_DIR / name).read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def expected_count(wstest_log: Path) -> int | None:
    """Return the number of cases wstest said it would run (from its log)."""
    match = re.search(r"will run (\d+) test cases", wstest_log.read_text(errors="replace"))
    return int(match.group(1)) if match else None


def trigger_update_reports(port: int, agent: str, timeout: float = 60.0) -> None:
    """Ask the fuzzing server to write ``agent``'s reports (stdlib-only client).

    Used when a client testee died or timed out before its own
    ``/updateReports`` call, so that the cases it did run are still reported.
    The server writes the reports before it sends its Close frame, so once
    any byte follows the 101 response the reports exist.
    """
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /updateReports?agent={agent} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request.encode())
        received = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return
            received += chunk
            _, sep, rest = received.partition(b"\r\n\r\n")
            if sep and rest:  # the Close frame arrived after the 101
                return


def run_server_testee(testee: Testee, cases: list[str], outdir: Path, wstest: Path, timeout: float) -> dict[str, Any]:
    """Start a server testee, run ``wstest -m fuzzingclient`` on it, stop it."""
    port = free_port()
    spec = load_template("fuzzingclient.json")
    spec["servers"] = [{"agent": testee.name, "url": f"ws://127.0.0.1:{port}"}]
    spec["cases"] = cases
    spec["outdir"] = str(outdir)
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    testee_log, wstest_log = outdir / "testee.log", outdir / "wstest.log"
    record: dict[str, Any] = {"status": "ok", "message": ""}
    with testee_log.open("wb") as tlog, wstest_log.open("wb") as wlog:
        server = spawn([sys.executable, str(testee.path), "--port", str(port)], tlog, TESTEES_DIR, testee=True)
        try:
            wait_for_port(port, server, testee_log, timeout=30)
            client = spawn([str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)], wlog, outdir, testee=False)
            try:
                client.wait(timeout)
            except subprocess.TimeoutExpired:
                record.update(status="timeout", message=f"wstest still running after {timeout:.0f} s")
            finally:
                stop(client)
            if client.returncode not in (0, None) and record["status"] == "ok":
                record.update(status="error", message=f"wstest exited with {client.returncode}")
            if server.poll() is not None:
                record.update(
                    status="crashed",
                    message=f"testee exited with code {server.returncode} during the run",
                )
        finally:
            stop(server)
    record["expected_cases"] = expected_count(wstest_log)
    return record


def run_client_testee(testee: Testee, cases: list[str], outdir: Path, wstest: Path, timeout: float) -> dict[str, Any]:
    """Start ``wstest -m fuzzingserver``, run a client testee against it, stop it."""
    port = free_port()
    spec = load_template("fuzzingserver.json")
    spec["url"] = f"ws://127.0.0.1:{port}"
    spec["cases"] = cases
    spec["outdir"] = str(outdir)
    spec_path = outdir / "fuzzingserver.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    testee_log, wstest_log = outdir / "testee.log", outdir / "wstest.log"
    record: dict[str, Any] = {"status": "ok", "message": ""}
    with testee_log.open("wb") as tlog, wstest_log.open("wb") as wlog:
        server = spawn(
            [str(wstest), "-m", "fuzzingserver", "--webport=0", "-s", str(spec_path)],
            wlog,
            outdir,
            testee=False,
        )
        try:
            wait_for_port(port, server, wstest_log, timeout=60)
            client = spawn(
                [sys.executable, str(testee.path), "--url", spec["url"], "--agent", testee.name],
                tlog,
                TESTEES_DIR,
                testee=True,
            )
            try:
                client.wait(timeout)
            except subprocess.TimeoutExpired:
                record.update(status="timeout", message=f"testee still running after {timeout:.0f} s")
            finally:
                stop(client)
            if client.returncode != 0 and record["status"] == "ok":
                record.update(status="crashed", message=f"testee exited with {client.returncode}")
            if not (outdir / "index.json").exists() and server.poll() is None:
                try:  # salvage the cases that did run
                    trigger_update_reports(port, testee.name)
                except OSError as exc:
                    record["message"] += f"; /updateReports failed: {exc}"
        finally:
            stop(server)
    record["expected_cases"] = expected_count(wstest_log)
    return record


def select_cases(args: argparse.Namespace, testee: str) -> list[str]:
    """Return the case patterns to run for one testee."""
    if args.ci:
        return CI_CASES + CI_EXTRA_CASES.get(testee, [])
    return [c.strip() for c in args.cases.split(",") if c.strip()]


def ensure_wstest(venv: Path, run_setup: bool) -> Path:
    """Return the path of ``wstest``, running ``setup.sh`` first if asked."""
    if run_setup:
        env = dict(os.environ, WSKIT_AUTOBAHN_VENV=str(venv))
        result = subprocess.run(["bash", str(HERE / "setup.sh")], env=env, check=False)
        if result.returncode != 0:
            raise HarnessError("tests/compliance/setup.sh failed (see above)")
    wstest = venv / "bin" / "wstest"
    if not wstest.exists():
        raise HarnessError(f"{wstest} not found: run 'bash tests/compliance/setup.sh' first")
    return wstest


def parse_args(argv: Sequence[str] | None, testees: dict[str, Testee]) -> argparse.Namespace:
    """Parse the runner's command line."""
    parser = argparse.ArgumentParser(
        description="Run Autobahn|Testsuite against wskit testees.",
        epilog="Testees: " + ", ".join(testees),
    )
    parser.add_argument(
        "--testee",
        action="append",
        default=[],
        metavar="NAME",
        help="testee to run (repeatable; glob patterns allowed; 'all' includes the "
        f"{REFERENCE_PREFIX}* reference testees; default: every wskit testee)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--cases",
        default="*",
        help="comma-separated case ids or patterns, e.g. '1.*,2.*,9.1.1' (default: '*')",
    )
    group.add_argument(
        "--ci",
        action="store_true",
        help="CI selection: groups 1-10 for every testee, plus "
        + "; ".join(f"{' '.join(v)} for {k}" for k, v in CI_EXTRA_CASES.items()),
    )
    parser.add_argument("--outdir", type=Path, default=DEFAULT_OUTDIR, help=f"reports root (default: {DEFAULT_OUTDIR})")
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"wstest's py2.7 venv (default: {DEFAULT_VENV})"
    )
    parser.add_argument("--no-setup", action="store_true", help="do not run setup.sh first")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds allowed per testee (default: 240 with --ci, 1200 otherwise)",
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="IDS",
        help="accepted problem cases, passed to summarize.py (e.g. '6.4.*' or 'sync_client:7.1.6')",
    )
    parser.add_argument("--no-details", action="store_true", help="do not list the problem cases' descriptions")
    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 240.0 if args.ci else 1200.0
    return args


def pick_testees(patterns: list[str], testees: dict[str, Testee]) -> list[Testee]:
    """Resolve ``--testee`` values to testees (raises HarnessError on unknown names)."""
    if not patterns:
        return [t for n, t in testees.items() if not n.startswith(REFERENCE_PREFIX)]
    picked: list[Testee] = []
    for pattern in patterns:
        if pattern == "all":
            matches = list(testees)
        else:
            matches = [n for n in testees if fnmatch.fnmatchcase(n, pattern)]
        if not matches:
            raise HarnessError(f"unknown testee {pattern!r}; known: {', '.join(testees)} (files in {TESTEES_DIR})")
        picked.extend(testees[n] for n in matches if testees[n] not in picked)
    return picked


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected testees; return the summary's exit code."""
    testees = discover_testees()
    args = parse_args(argv, testees)
    try:
        selected = pick_testees(args.testee, testees)
        wstest = ensure_wstest(args.venv.resolve(), run_setup=not args.no_setup)
    except HarnessError as exc:
        print(f"compliance: error: {exc}", file=sys.stderr)
        return 2
    outdir: Path = args.outdir.resolve()
    report_dirs: list[Path] = []
    total_start = time.monotonic()
    for testee in selected:
        cases = select_cases(args, testee.name)
        testee_dir = outdir / testee.name
        if testee_dir.exists():
            shutil.rmtree(testee_dir)
        testee_dir.mkdir(parents=True)
        print(f"compliance: {testee.name} ({testee.kind}) cases {','.join(cases)} ...", flush=True)
        start = time.monotonic()
        runner = run_server_testee if testee.kind == "server" else run_client_testee
        try:
            record = runner(testee, cases, testee_dir, wstest, args.timeout)
        except HarnessError as exc:
            record = {"status": "error", "message": str(exc), "expected_cases": None}
        record.update(
            testee=testee.name,
            kind=testee.kind,
            cases=cases,
            seconds=round(time.monotonic() - start, 1),
        )
        (testee_dir / "run.json").write_text(json.dumps(record, indent=2) + "\n")
        note = f" [{record['status']}: {record['message']}]" if record["status"] != "ok" else ""
        print(f"compliance: {testee.name} done in {record['seconds']} s{note}", flush=True)
        report_dirs.append(testee_dir)
    print(f"compliance: total {time.monotonic() - total_start:.1f} s\n", flush=True)
    summary_args = [str(d) for d in report_dirs]
    for allowed in args.allow:
        summary_args += ["--allow", allowed]
    if args.no_details:
        summary_args.append("--no-details")
    return summarize.main(summary_args)


if __name__ == "__main__":
    sys.exit(main())
