"""The documentation site (mkdocs.yml): every page is in the nav, and the strict build has what users need.

The build runs when the doc tools are installed (the ``docs`` extra, which ``make venv`` and
``make docs`` install); ``make docs`` (run by ``.ci/run``) is the strict build itself.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

# The modules the API reference must document (issue 17); more may be listed in mkdocs.yml.
REQUIRED_API = ["wskit", "wskit.asyncio", "wskit.sync", "wskit.protocol", "wskit.frames", "wskit.exceptions",
                "wskit.extensions.base", "wskit.extensions.permessage_deflate", "wskit.config", "wskit.duties",
                "wskit.hookspecs", "wskit.configschema"]


def site_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return config


def nav_pages(item: Any) -> list[str]:
    if isinstance(item, str):
        return [item]
    if isinstance(item, dict):
        return [page for value in item.values() for page in nav_pages(value)]
    if isinstance(item, list):
        return [page for value in item for page in nav_pages(value)]
    return []


def api_modules() -> list[str]:
    return [page[len("api/"):-len(".md")] for page in nav_pages(site_config()["nav"]) if page.startswith("api/")]


def test_every_docs_page_is_in_the_nav() -> None:
    # A new page (docs/client.md...) must be added to mkdocs.yml's nav: the strict build fails too.
    listed = set(nav_pages(site_config()["nav"]))
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [page for page in pages if page not in listed]
    assert not missing, f"add these pages to the nav of mkdocs.yml: {missing}"
    assert [p for p in listed if not p.startswith("api/") and p not in pages] == []


def test_the_api_reference_lists_every_required_module() -> None:
    modules = api_modules()
    assert [m for m in REQUIRED_API if m not in modules] == []
    assert len(modules) == len(set(modules))
    for module in modules:
        importlib.import_module(module)  # a listed module exists


def test_the_build_is_strict_and_checks_links() -> None:
    config = site_config()
    assert config["strict"] is True
    validation = config["validation"]
    assert {validation[k] for k in ("omitted_files", "unrecognized_links", "anchors", "absolute_links")} == {"warn"}


def test_make_docs_is_phony_because_of_the_folder() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = " ".join(line for line in makefile.splitlines() if line.startswith(".PHONY:"))
    assert re.search(r"\bdocs\b", phony)
    assert "mkdocs build --strict" in makefile
    assert "make docs" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# -- the built site ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mkdocs", reason="the doc tools (pip install -e '.[docs]') build the site")
    pytest.importorskip("mkdocstrings_handlers.python", reason="mkdocstrings[python] renders the API reference")
    pytest.importorskip("graphviz", reason="the state diagram needs the graphviz package")
    if shutil.which("dot") is None:
        pytest.skip("the state diagram needs Graphviz's dot (apt-get install graphviz)")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    for page in sorted(DOCS.glob("*.md")):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"{page.name} was not built"


def test_the_api_reference_documents_every_public_name(site: Path) -> None:
    for module_name in api_modules():
        module = importlib.import_module(module_name)
        html = (site / "api" / module_name / "index.html").read_text(encoding="utf-8")
        public = [name for name in getattr(module, "__all__", []) if not name.startswith("_")]
        assert public, f"{module_name} has no __all__"
        missing = [name for name in public if f'id="{module_name}.{name}"' not in html]
        assert not missing, f"the API page of {module_name} lacks {missing}"
    # A reST role of a docstring became a link to the documented object, not raw text.
    html = (site / "api" / "wskit.asyncio" / "index.html").read_text(encoding="utf-8")
    assert ":class:`" not in html and ":func:`" not in html
    assert 'href="../wskit.exceptions/#wskit.exceptions.WSKitError"' in html


def test_the_state_diagram_is_an_image_drawn_from_the_spec(site: Path) -> None:
    svg = (site / "state-machine.svg").read_text(encoding="utf-8")
    assert "<svg" in svg
    from wskit.statemachine import load_spec

    for state in load_spec().states:  # the state names
        assert f">{state}</text>" in svg, state
    page = (site / "state-machine" / "index.html").read_text(encoding="utf-8")
    assert '<img alt="The wskit connection state machine' in page and 'src="../state-machine.svg"' in page


def test_links_between_pages_resolve(site: Path) -> None:
    # mkdocs --strict already refuses broken links; this checks the built result the same way.
    for html_file in site.rglob("*.html"):
        text = html_file.read_text(encoding="utf-8")
        for target in re.findall(r'href="([^"#:?]+?)(?:#[^"]*)?"', text):
            if target.startswith(("/", "mailto")) or not target:
                continue
            resolved = (html_file.parent / target).resolve()
            assert resolved.exists() or (resolved / "index.html").exists(), f"{html_file}: broken link {target}"
