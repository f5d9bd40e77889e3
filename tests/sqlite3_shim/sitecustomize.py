"""Puts ``sqlite_session_safe.dbapi`` in place of the stdlib ``sqlite3``,
process-wide, for running another project's own test suite on it:

    PYTHONPATH=/path/to/checkout/tests/sqlite3_shim python -m pytest ...

Python imports ``sitecustomize`` at start-up (subprocesses too, as they
inherit PYTHONPATH), so every later ``import sqlite3`` and ``from sqlite3
import dbapi2`` gets this package's module.  Used to check applications
(README, "How close to the stdlib"); never imported by the package.
"""

import sqlite3  # noqa: F401  - the stdlib's first: ours derives its errors from its classes
import sys

import sqlite_session_safe.dbapi as _ours

sys.modules["sqlite3"] = _ours
sys.modules["sqlite3.dbapi2"] = _ours.dbapi2
