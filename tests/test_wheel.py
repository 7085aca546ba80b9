"""The built wheel, installed in a fresh virtual environment, carries what wskit needs.

A copy of the source tree is built into a wheel, installed with its runtime
dependencies into a new venv, and probed from a fresh interpreter in that venv
(isolated mode, run outside the checkout, so nothing from the source tree can
leak in): the package imports, ``specs/connection.yaml`` is loadable through
``importlib.resources``, the type markers ship, and the C accelerator is there.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# Not copied into the build tree: VCS data, environments, build and tool outputs.
IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.so",
    "*.pyd",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
    ".autobahn",
    "reports",
)


@dataclass(frozen=True)
class Installed:
    """A wheel built from the checkout and the venv it is installed in."""

    wheel: Path
    python: Path


def _run(cmd: list[str], *, cwd: Path, timeout: float = 120, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        pytest.fail(
            f"command failed with exit code {result.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result.stdout


def _can_build_without_isolation() -> bool:
    """True when this environment has a setuptools new enough to build the wheel itself."""
    try:
        from importlib.metadata import version

        setuptools_major = int(version("setuptools").split(".")[0])
    except Exception:
        return False
    if setuptools_major >= 71:  # bdist_wheel is part of setuptools
        return True
    return setuptools_major >= 68 and importlib.util.find_spec("wheel") is not None


def _clean_env() -> dict[str, str]:
    # WSKIT_NO_SPEEDUPS (a run of the suite on the pure-Python paths) would hide what the wheel holds.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "WSKIT_NO_SPEEDUPS"}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """Build the wheel from a copy of the checkout and install it in a new venv."""
    if not (REPO / "pyproject.toml").is_file():
        pytest.skip(f"no source checkout at {REPO} (pyproject.toml missing)")
    if importlib.util.find_spec("venv") is None:
        pytest.skip("the venv module is missing from this Python: cannot create a fresh environment")
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is missing from this environment: cannot build or install the wheel")

    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(REPO, src, ignore=IGNORED)
    dist = base / "dist"
    env = _clean_env()

    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist)]
    if _can_build_without_isolation():
        build.append("--no-build-isolation")
    _run([*build, str(src)], cwd=base, env=env, timeout=300)
    wheels = list(dist.glob("wskit-*.whl"))
    assert len(wheels) == 1, f"expected one wskit wheel in {dist}, found {wheels}"

    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=base, env=env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # This environment's pip installs into the new venv (pip >= 22.3: --python),
    # with the wheel's runtime dependencies from the package index.
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-input", str(wheels[0])],
        cwd=base,
        env=env,
        timeout=300,
    )
    yield Installed(wheel=wheels[0], python=python)


def _probe(installed: Installed, code: str, tmp_path: Path) -> dict[str, object]:
    """Run ``code`` in the venv's interpreter (isolated, outside the checkout); it prints JSON."""
    out = _run([str(installed.python), "-I", "-c", textwrap.dedent(code)], cwd=tmp_path, env=_clean_env())
    result: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    return result


def test_wheel_contains_sources_specs_and_type_markers(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
    missing = {"wskit/specs/connection.yaml", "wskit/py.typed", "wskit/_speedups.pyi"} - names
    assert not missing, f"{installed.wheel.name} lacks {sorted(missing)}"
    for spec in (REPO / "specs").glob("*.yaml"):
        assert f"wskit/specs/{spec.name}" in names, f"{spec.name} from specs/ is not in the wheel"
    for source in (REPO / "wskit").rglob("*.py"):
        if "__pycache__" in source.parts:
            continue
        arcname = source.relative_to(REPO).as_posix()
        assert arcname in names, f"{arcname} is not in the wheel"
    assert not any(name.startswith("tests/") for name in names), "tests must not be packaged"


def test_installed_wheel_imports_and_loads_spec(installed: Installed, tmp_path: Path) -> None:
    result = _probe(
        installed,
        """
        import importlib.resources, json, sys
        import yaml
        import wskit
        spec = importlib.resources.files("wskit.specs") / "connection.yaml"
        data = yaml.safe_load(spec.read_text(encoding="utf-8"))
        print(json.dumps({
            "wskit": wskit.__file__,
            "prefix": sys.prefix,
            "spec_is_file": spec.is_file(),
            "spec_type": type(data).__name__,
        }))
        """,
        tmp_path,
    )
    assert str(result["wskit"]).startswith(str(result["prefix"])), f"wskit imported from outside the venv: {result}"
    assert result["spec_is_file"] is True
    assert result["spec_type"] == "dict", "connection.yaml did not load as a YAML mapping"


def test_installed_wheel_runs_the_command_line(installed: Installed, tmp_path: Path) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = set(whl.namelist())
    assert {"wskit/cli/__init__.py", "wskit/cli/demo.py", "wskit/__main__.py"} <= names
    version = _probe(installed, "import json, wskit; print(json.dumps({'v': wskit.__version__}))", tmp_path)["v"]
    script = installed.python.parent / ("wskit.exe" if os.name == "nt" else "wskit")
    for command in ([str(script)], [str(installed.python), "-I", "-m", "wskit"]):
        assert _run([*command, "--version"], cwd=tmp_path, env=_clean_env()) == f"wskit {version}\n"
    out = _run([str(script), "config", "check", str(REPO / "examples" / "client.yaml")], cwd=tmp_path,
               env=_clean_env())
    assert out.startswith("ok\n")


def test_installed_wheel_has_c_accelerator(installed: Installed, tmp_path: Path) -> None:
    here_built = importlib.util.find_spec("wskit._speedups") is not None
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
    in_wheel = any(name.startswith("wskit/_speedups.") and name.endswith((".so", ".pyd")) for name in names)
    if not in_wheel and not (IN_CI or here_built):
        pytest.skip("no C compiler here: the wheel was built without wskit._speedups (pure-Python fallback)")
    assert in_wheel, f"{installed.wheel.name} has no compiled wskit._speedups"
    result = _probe(
        installed,
        """
        import json
        import wskit._speedups, wskit.mask
        print(json.dumps({
            "using": wskit.mask.USING_SPEEDUPS,
            "masked": wskit._speedups.apply_mask(b"Hello", bytes.fromhex("37fa213d")).hex(),
        }))
        """,
        tmp_path,
    )
    assert result == {"using": True, "masked": "7f9f4d5158"}


def test_spec_resource_resolves_in_this_environment() -> None:
    # The development install (`pip install -e .`) must find the spec the same way.
    spec = importlib.resources.files("wskit.specs") / "connection.yaml"
    assert spec.is_file(), f"wskit.specs/connection.yaml not found via importlib.resources ({spec})"
    assert isinstance(yaml.safe_load(spec.read_text(encoding="utf-8")), dict)
