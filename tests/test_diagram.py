"""Tests for wskit.cli.diagram: diagrams and the docs page drawn from the state-machine spec."""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml

from wskit.__main__ import main as cli_main
from wskit.cli.diagram import DiagramUnavailable, markdown, render, state_label
from wskit.statemachine import StateSpec, default_spec, spec_path

ROOT = Path(__file__).resolve().parent.parent
SPEC_TEXT = (ROOT / "specs" / "connection.yaml").read_text(encoding="utf-8")


def edges(spec: StateSpec) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for trigger, src, dest in spec.transitions:
        out.setdefault((src, dest), set()).add(trigger)
    return out


def mermaid_edges(text: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for src, dest, label in re.findall(r"^\s*(\w+) --> (\w+): (.+)$", text, re.M):
        out[(src, dest)] = set(label.split(" | "))
    return out


def dot_edges(text: str) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for src, dest, label in re.findall(r"^\s*(\w+) -> (\w+) \[label=\"?([^\"\]]+)\"?\]$", text, re.M):
        out[(src, dest)] = set(label.split(" | "))
    return out


def write_spec(tmp_path: Path, data: object, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_mermaid_has_every_state_and_transition() -> None:
    spec = default_spec()
    text = render(None, "mermaid")
    assert isinstance(text, str)
    assert "stateDiagram-v2" in text
    assert text.startswith("---\ntitle: wskit connection state machine\n---\n")
    for name, info in spec.states.items():
        assert f'state "{state_label(info)}" as {name}' in text
    assert mermaid_edges(text) == edges(spec)
    assert f"[*] --> {spec.initial}" in text
    assert "s_active" not in text  # the whole machine, no current state highlighted


def test_labels_show_public_state_and_operations() -> None:
    states = default_spec().states
    assert state_label(states["open"]) == "open (open) receive, send_data, send_close"
    assert state_label(states["closing_sent"]) == "closing_sent (closing) receive [close_sent]"
    assert state_label(states["closed"]) == "closed (closed) no operations [close_sent, close_received, clean]"
    assert state_label(states["connecting"], "graphviz") == r"connecting\lstate: connecting\lhandshake"
    assert state_label(states["failed"], "graphviz") == r"failed\lstate: closing\lno operations\lclose_sent, failed"


def test_dot_has_every_state_and_transition() -> None:
    pytest.importorskip("graphviz")
    spec = default_spec()
    text = render(None, "dot")
    assert isinstance(text, str) and text.startswith("digraph")
    for name, info in spec.states.items():
        label = state_label(info, "graphviz")
        assert re.search(rf'^\s*{name} \[label="{re.escape(label)}\\l"\]', text, re.M), name
    assert dot_edges(text) == edges(spec)


def test_cli_default_is_mermaid(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["diagram"]) == 0
    assert capsys.readouterr().out == render(None, "mermaid")


def test_cli_writes_output_file(tmp_path: Path) -> None:
    out = tmp_path / "sm.mmd"
    assert cli_main(["diagram", "--format", "mermaid", "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render(None, "mermaid")


def test_spec_option_shows_the_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(SPEC_TEXT)
    # "failing_received" becomes "draining", which declares the same facts.
    data["states"]["draining"] = dict(data["states"].pop("failing_received"), description="draining")
    for t in data["transitions"]:
        t.update({k: "draining" for k in ("source", "dest") if t[k] == "failing_received"})
    path = write_spec(tmp_path, data)
    assert cli_main(["diagram", "--spec", str(path)]) == 0
    text = capsys.readouterr().out
    assert 'state "draining (closing) send_data [close_sent, close_received, failed]" as draining' in text
    found = mermaid_edges(text)
    assert found[("closing_received", "draining")] == {"fail"}
    assert found[("draining", "failed_received_closed")] == {"eof"}
    assert "draining" not in str(render(None, "mermaid"))


def test_spec_option_for_docs(tmp_path: Path) -> None:
    data = yaml.safe_load(SPEC_TEXT)
    data["states"]["open"]["description"] = "changed description"
    path = write_spec(tmp_path, data)
    page = markdown(path)
    assert "| `open` | `open` | `receive`, `send_data`, `send_close` |" in page and "changed description" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["transitions"].append({"trigger": "eof", "source": "open", "dest": "nowhere"}),
         "transitions[16].dest: unknown state 'nowhere'"),
        (lambda d: d["states"]["closing_sent"]["allow"].append("send_data"),
         "states.closing_sent.allow: send_data after our Close was sent (RFC 6455 §5.5.1"),
        (lambda d: d["states"].update(limbo={"public": "closing", "allow": []}),
         "states.limbo: unreachable: no transition leads to it"),
        (lambda d: d["transitions"].append({"trigger": "accept", "source": "open", "dest": "open",
                                            "after": "os.system"}),
         "transitions[16].after: unknown key (callbacks and conditions are not allowed in a spec)"),
        (lambda d: d["states"]["open"].update(public="half-open"),
         "states.open.public: expected one of closed, closing, connecting, open, got 'half-open'"),
    ],
)
def test_invalid_spec_exits_1_with_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: object, message: str
) -> None:
    data = yaml.safe_load(SPEC_TEXT)
    change(data)  # type: ignore[operator]
    path = write_spec(tmp_path, data)
    assert cli_main(["diagram", "--spec", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Traceback" not in captured.err
    assert any(line.startswith("error: ") and str(path) in line and message in line
               for line in captured.err.splitlines()), captured.err


def test_dead_end_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = yaml.safe_load(SPEC_TEXT)
    data["states"]["stuck"] = {"public": "closing", "allow": [], "facts": ["close_sent", "close_received", "failed"]}
    for t in data["transitions"]:
        if t["trigger"] == "fail" and t["source"] == "closing_received":
            t["dest"] = "stuck"
    data["transitions"].append({"trigger": "eof", "source": "stuck", "dest": "stuck"})  # a loop, never an end
    path = write_spec(tmp_path, data)
    assert cli_main(["diagram", "--spec", str(path), "--docs"]) == 1
    err = capsys.readouterr().err
    assert "states.stuck: dead end: no path leads from it to a terminal (closed) state" in err
    assert "states.stuck: eof leads to 'stuck', which is not terminal" in err


def test_spec_yaml_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("states: [open\n", encoding="utf-8")
    assert cli_main(["diagram", "--spec", str(path)]) == 1
    assert f"error: {path}:2: invalid YAML" in capsys.readouterr().err


def test_missing_spec_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["diagram", "--spec", str(tmp_path / "nope.yaml")]) == 1
    assert "cannot read the state-machine spec" in capsys.readouterr().err


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown diagram format 'gif'"):
        render(None, "gif")
    with pytest.raises(SystemExit):
        cli_main(["diagram", "--format", "gif"])


def test_images_without_the_dot_binary(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("graphviz")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    for fmt in ("svg", "png"):
        assert cli_main(["diagram", "--format", fmt]) == 1
        assert capsys.readouterr().err == (
            "error: install Graphviz (apt-get install graphviz) for svg/png, or use --format mermaid/dot\n"
        )
    assert cli_main(["diagram", "--format", "dot"]) == 0  # dot source needs no binary


def test_dot_without_the_graphviz_package(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "graphviz" else real(name))
    with pytest.raises(DiagramUnavailable, match=r"pip install 'wskit\[diagrams\]'"):
        render(None, "dot")
    assert cli_main(["diagram", "--format", "svg"]) == 1
    assert "graphviz Python package" in capsys.readouterr().err
    assert cli_main(["diagram"]) == 0  # mermaid needs neither


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot program")
def test_svg_and_png(tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    svg = render(None, "svg")
    assert isinstance(svg, bytes) and b"<svg" in svg
    for name in default_spec().states:
        assert name.encode() in svg
    out = tmp_path / "sm.png"
    assert cli_main(["diagram", "--format", "png", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_docs_page_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "state-machine.md").read_text(encoding="utf-8")
    assert committed == markdown(), "regenerate: wskit diagram --docs -o docs/state-machine.md"


def test_docs_page_content() -> None:
    spec = default_spec()
    page = markdown()
    block = page.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert block == render(None, "mermaid")
    for name, info in spec.states.items():
        assert f"| `{name}` | `{info.public.value}` |" in page
        assert info.description in page
    for trigger, src, dest in spec.transitions:
        assert f"| `{trigger}` | `{src}` | `{dest}` |" in page


def test_docs_page_names_the_shipped_spec() -> None:
    assert "specs/connection.yaml" in markdown()
    assert Path(str(spec_path())).name == "connection.yaml"
