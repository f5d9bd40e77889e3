"""Files of the source checkout that some tests read (PROTOCOL.md, docs/,
vendor/).

They are found beside ``tests/`` in a checkout, or under ``$SSS_SOURCE_DIR``
(point it at a checkout when the tests run from elsewhere, e.g. against an
installed wheel).  A test that needs one that is in neither place skips, and
says why; the rest of the suite runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_BESIDE_TESTS = Path(__file__).resolve().parent.parent


def source_path(*parts: str) -> Path:
    """``parts`` under the source checkout; skips the calling test if absent."""
    roots = [Path(os.environ["SSS_SOURCE_DIR"])] if os.environ.get("SSS_SOURCE_DIR") else []
    for root in [*roots, _BESIDE_TESTS]:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    pytest.skip(f"needs {'/'.join(parts)} from a source checkout: run the tests from one, or set "
                "SSS_SOURCE_DIR to one")
