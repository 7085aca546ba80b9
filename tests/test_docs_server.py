"""The examples of docs/server.md run and print what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parent.parent / "docs" / "server.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)

# A string only its block has -> what it prints.
EXPECTED = {
    "broadcast(server.connections": "['news for everyone', 'news for everyone', 'news for everyone']\n",
    "route({": "welcome to blue\nitem 42\n404\n",
    "basic_auth(\"my server\"": '401 Basic realm="my server", charset="UTF-8"\nhello ann\n',
    "process_response=stamp": "/chat False\nTrue\n",
}


@pytest.mark.parametrize("marker", list(EXPECTED))
def test_server_page_example(marker: str, capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = [b for b in BLOCKS if marker in b]
    exec(compile(block, "docs/server.md", "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out == EXPECTED[marker]


def test_every_example_is_run() -> None:
    assert len(BLOCKS) == len(EXPECTED)
