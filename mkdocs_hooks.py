"""Build-time steps of the documentation site (``hooks:`` in mkdocs.yml; run by ``make docs``).

* The API reference: one page per module listed under "API reference" in
  mkdocs.yml's ``nav`` (``api/MODULE.md``), each rendered by mkdocstrings from
  the module's docstrings. The nav is the one list of documented modules.
* The state diagram: ``state-machine.svg``, drawn from the spec at build time
  by ``wskit diagram --format svg`` (needs Graphviz's ``dot``), shown on the
  state machine page in place of its Mermaid source.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

API_PREFIX = "api/"
DIAGRAM = "state-machine.svg"
DIAGRAM_PAGE = "state-machine.md"


def api_pages(nav: Any) -> list[str]:
    """Every ``api/MODULE.md`` path in the nav, in order."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            if item.startswith(API_PREFIX) and item.endswith(".md"):
                found.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value)
        elif isinstance(item, list):
            for value in item:
                walk(value)

    walk(nav)
    return found


def api_page(module: str) -> str:
    """The Markdown of one API reference page."""
    return (f"# `{module}`\n\n"
            f"The public names of `{module}`, from their docstrings.\n\n"
            f"::: {module}\n")


def state_diagram_svg() -> bytes:
    """Draw the connection state machine with ``wskit diagram --format svg``."""
    try:
        result = subprocess.run([sys.executable, "-m", "wskit", "diagram", "--format", "svg"], capture_output=True,
                                timeout=120, check=False)
    except OSError as exc:
        raise PluginError(f"cannot run wskit diagram: {exc}") from None
    if result.returncode != 0 or not result.stdout.lstrip().startswith((b"<?xml", b"<svg")):
        raise PluginError("`wskit diagram --format svg` failed (Graphviz's `dot` is needed to build the docs): "
                          + result.stderr.decode(errors="replace").strip())
    return result.stdout


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages and the diagram to the site's files."""
    for path in api_pages(config.nav):
        if files.get_file_from_path(path) is None:
            module = path[len(API_PREFIX):-len(".md")]
            files.append(File.generated(config, path, content=api_page(module)))
    files.append(File.generated(config, DIAGRAM, content=state_diagram_svg()))
    return files


_MERMAID = re.compile(r"```mermaid\n(.*?)```\n", re.S)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Show the state diagram as an image; its Mermaid source folds away below it."""
    if page.file.src_uri != DIAGRAM_PAGE:
        return markdown
    match = _MERMAID.search(markdown)
    if match is None:
        raise PluginError(f"{DIAGRAM_PAGE}: no Mermaid diagram to replace with {DIAGRAM}")
    image = (f"![The wskit connection state machine, drawn from specs/connection.yaml]({DIAGRAM})\n\n"
             f'??? note "The same diagram as Mermaid source"\n\n'
             + "".join(f"    {line}\n" if line else "\n"
                       for line in ("```mermaid\n" + match.group(1) + "```").split("\n"))
             + "\n")
    return markdown[:match.start()] + image + markdown[match.end():]


# -- docstrings: the reStructuredText roles of the source become cross-references ---------------

import griffe  # noqa: E402  (griffe comes with mkdocstrings[python])

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|data|mod|attr|exc|obj|const):`(~?)([^`<>]+)`")


def _role_to_autoref(match: re.Match[str], module: str) -> str:
    short, target = match.group(1), match.group(2).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if target.startswith("."):
        target = module + target
    elif "." not in target or not target.split(".", 1)[0].isidentifier() or (
            not target.startswith("wskit") and target.split(".", 1)[0][:1].isupper()):
        target = f"{module}.{target}"  # a name of the same module (or a class of it)
    # optional: linked when the target is documented, plain code otherwise (no warning).
    return f'<autoref identifier="{target}" optional><code>{shown}</code></autoref>'


def markdown_docstring(text: str, module: str) -> str:
    """Turn the reStructuredText bits of a docstring into Markdown: roles, ``::`` literal blocks."""
    text = _ROLE.sub(lambda m: _role_to_autoref(m, module), text)
    lines: list[str] = []
    in_doctest: str | None = None  # the indentation of the open ```pycon fence
    for line in text.split("\n"):
        stripped = line.lstrip()
        indent = line[:len(line) - len(stripped)]
        if in_doctest is not None and not stripped:  # a blank line ends a doctest block
            lines.append(f"{in_doctest}```")
            in_doctest = None
        elif in_doctest is None and stripped.startswith(">>>"):  # interactive examples: code, not quotes
            if lines and lines[-1].strip():
                lines.append("")
            lines.append(f"{indent}```pycon")
            in_doctest = indent
        if stripped == "::":
            continue
        lines.append(line[:-1] if line.endswith("::") else line)
    if in_doctest is not None:
        lines.append(f"{in_doctest}```")
    return "\n".join(lines)


class RstRoles(griffe.Extension):
    """A griffe extension (mkdocs.yml's mkdocstrings ``extensions``): docstrings written with
    ``:class:`...``` roles render as links to the API reference."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            module = obj.module.path if not obj.is_module else obj.path
            obj.docstring.value = markdown_docstring(obj.docstring.value, module)
