"""Build script for wskit's optional C accelerator.

All metadata lives in ``pyproject.toml``; this file only declares the
``wskit._speedups`` extension and makes its build optional: without a C
compiler, or when the build fails, the install still succeeds and
``wskit.mask`` falls back to pure Python. Set ``WSKIT_NO_EXTENSIONS=1`` to
skip the build altogether.

It also lists the packages: package discovery sees ``wskit`` and its
sub-packages, but not ``wskit.specs``, which ``pyproject.toml`` maps to the
top-level ``specs/`` directory (the state-machine YAML files).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from setuptools import Extension, find_namespace_packages, setup  # type: ignore[import-untyped]
from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]


class OptionalBuildExt(build_ext):  # type: ignore[misc]
    """A ``build_ext`` whose failures are reported, not fatal."""

    def run(self) -> None:
        """Build all extensions, warning instead of failing."""
        try:
            super().run()
        except Exception as exc:  # compiler missing: CCompilerError, PlatformError, ...
            self._warn(f"C extensions not built ({exc!r}); using the pure-Python fallback")

    def build_extension(self, ext: Any) -> None:
        """Build one extension, warning instead of failing."""
        try:
            super().build_extension(ext)
        except Exception as exc:  # compile or link error
            self._warn(f"{ext.name} not built ({exc!r}); using the pure-Python fallback")

    @staticmethod
    def _warn(message: str) -> None:
        print(f"WARNING: wskit: {message}", file=sys.stderr)


def _extensions() -> list[Extension]:
    if os.environ.get("WSKIT_NO_EXTENSIONS", "") not in ("", "0"):
        return []
    return [Extension("wskit._speedups", sources=["wskit/_speedups.c"], optional=True)]


def _packages() -> list[str]:
    found = find_namespace_packages(include=["wskit", "wskit.*"], exclude=["*__pycache__*"])
    return [*found, "wskit.specs"] if "wskit.specs" not in found else found


setup(
    packages=_packages(),
    ext_modules=_extensions(),
    cmdclass={"build_ext": OptionalBuildExt},
)
