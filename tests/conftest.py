"""Shared fixtures.  Tests use real SQLite files in pytest's tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlite_session_safe as sss

#: Multiplier for the size of tests marked ``stress`` (1 = the size CI runs).
STRESS_SCALE = float(os.environ.get("SSS_STRESS_SCALE", "1"))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


@pytest.fixture
def con(db_path: Path) -> Iterator[sss.Connection]:
    c = sss.connect(db_path)
    yield c
    c.close()
