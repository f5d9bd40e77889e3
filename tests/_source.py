"""Files of the source checkout that some tests read (README.md, PROTOCOL.md,
docs/, vendor/).

They are found beside ``tests/`` in a checkout, or under ``$SSS_SOURCE_DIR``
(point it at a checkout when the tests run from elsewhere, e.g. a copy of
``tests/`` run against an installed wheel).  A test that needs one that is in
neither place skips, and says why; the rest of the suite runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_BESIDE_TESTS = Path(__file__).resolve().parent.parent


def find_source(*parts: str) -> Path | None:
    """``parts`` under the source checkout, or None if neither place has it
    (for code that runs while tests are collected, where a test cannot skip)."""
    roots = [Path(os.environ["SSS_SOURCE_DIR"])] if os.environ.get("SSS_SOURCE_DIR") else []
    for root in [*roots, _BESIDE_TESTS]:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    return None


def _missing(parts: tuple[str, ...]) -> str:
    return (f"needs {'/'.join(parts)} from a source checkout: run the tests from one, or set "
            "SSS_SOURCE_DIR to one")


def source_path(*parts: str) -> Path:
    """``parts`` under the source checkout; skips the calling test if absent."""
    path = find_source(*parts)
    if path is None:
        pytest.skip(_missing(parts))
    return path


def module_source_path(*parts: str) -> Path:
    """As :func:`source_path`, at a test module's import: skips the whole
    module if absent."""
    path = find_source(*parts)
    if path is None:
        pytest.skip(_missing(parts), allow_module_level=True)
    return path
