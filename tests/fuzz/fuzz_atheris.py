"""Coverage-guided fuzzing of the same targets with atheris (libFuzzer).

    python tests/fuzz/fuzz_atheris.py TARGET [libFuzzer options]

TARGET is one of ``request``, ``response``, ``server-handshake``,
``client-handshake``, ``frames-server``, ``frames-client``,
``frames-gathered``, ``deflate``, ``config``. ``make fuzz`` runs each for ``FUZZ_SECONDS`` when atheris is
installed (``pip install -e '.[fuzz]'``, Linux and macOS on x86-64). A
crash is saved by libFuzzer as ``crash-<sha1>`` in the ``-artifact_prefix``
directory (``make fuzz``: ``build/fuzz/``); turn it into a test in
``tests/test_fuzz_regressions.py``.

The fuzzer's input is split by :func:`split`: its first byte picks the
chunk sizes and the variant (side, limits), the rest is the parser's input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import atheris

with atheris.instrument_imports(include=["wskit"]):
    from fuzz_targets import (
        check_client_handshake,
        check_config,
        check_deflate,
        check_frames,
        check_frames_gathered,
        check_request_parser,
        check_response_parser,
        check_server_handshake,
    )

    import wskit  # noqa: F401 - instrumented for coverage

from wskit import Side

_CHUNKINGS: list[list[int]] = [[], [1], [2, 3], [7], [64], [1, 13, 5]]
_LIMITS: list[int | None] = [2**20, 100, 0, None]


def split(data: bytes) -> tuple[int, list[int], bytes]:
    """Return ``(variant, chunk sizes, input)`` from a fuzzer input."""
    if not data:
        return 0, [], b""
    head = data[0]
    return head >> 3, _CHUNKINGS[head % len(_CHUNKINGS)], data[1:]


def _limit(variant: int) -> int | None:
    return _LIMITS[variant % len(_LIMITS)]


TARGETS: dict[str, Callable[[bytes], object]] = {
    "request": lambda d: check_request_parser(split(d)[2], split(d)[1], bool(split(d)[0] & 1)),
    "response": lambda d: check_response_parser(split(d)[2], split(d)[1], bool(split(d)[0] & 1)),
    "server-handshake": lambda d: check_server_handshake(split(d)[2], split(d)[1]),
    "client-handshake": lambda d: check_client_handshake(split(d)[2], split(d)[1]),
    "frames-server": lambda d: check_frames(split(d)[2], split(d)[1], Side.SERVER, _limit(split(d)[0])),
    "frames-client": lambda d: check_frames(split(d)[2], split(d)[1], Side.CLIENT, _limit(split(d)[0])),
    "frames-gathered": lambda d: check_frames_gathered(split(d)[2], split(d)[1],
                                                        Side.SERVER if split(d)[0] & 2 else Side.CLIENT,
                                                        _limit(split(d)[0])),
    "deflate": lambda d: check_deflate(split(d)[2], split(d)[1], _limit(split(d)[0]), bool(split(d)[0] & 4)),
    "config": lambda d: check_config(d.decode("utf-8", "replace")),
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} TARGET [libFuzzer options]; targets: {', '.join(TARGETS)}")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
