"""Shared fixtures.  Tests use real SQLite files in pytest's tmp_path.

The tests live in one folder per layer (binding/, sessions/, coordination/,
faces/; docs/ and structure/ check the documentation and the layering).  The
helper modules beside this file (``_*.py``) are imported by name from every
folder: pytest puts this file's folder on ``sys.path`` (its default
"prepend" import mode, as there is no ``__init__.py``), and the child
processes the tests start inherit that path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlite_session_safe as sss

#: Multiplier for the size of tests marked ``stress`` (1 = the size CI runs).
STRESS_SCALE = float(os.environ.get("SSS_STRESS_SCALE", "1"))


def pytest_configure(config: pytest.Config) -> None:
    # Here rather than in pyproject.toml, whose [tool.pytest.ini_options]
    # pytest reads only when run inside the source tree: the wheels' tests
    # run against the installed package from elsewhere.
    config.addinivalue_line(
        "markers",
        "stress: heavier concurrency/fuzz/fault runs, left out unless selected with -m "
        "(`-m stress`); sized by SSS_STRESS_SCALE (default 1)")
    # A deprecation (fork() with threads on 3.12+, an API going away) fails
    # the test that triggers it instead of scrolling by in a summary.
    config.addinivalue_line("filterwarnings", "error::DeprecationWarning")
    config.addinivalue_line("filterwarnings", "error::PendingDeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The default run (`python -m pytest`, what CI runs) stays within minutes
    # on a 2-core machine; each stress test has a CI-sized sibling that runs.
    if config.option.markexpr:
        return  # `-m stress`, `-m "not stress"`, ...: the user's selection
    stress = [item for item in items if item.get_closest_marker("stress")]
    if stress:
        config.hook.pytest_deselected(items=stress)
        items[:] = [item for item in items if not item.get_closest_marker("stress")]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


@pytest.fixture
def con(db_path: Path) -> Iterator[sss.Connection]:
    c = sss.connect(db_path)
    yield c
    c.close()
