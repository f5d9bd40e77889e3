"""The package's public surface (``sqlite_session_safe.__all__``): clearer
names are aliases of the old ones, and ``import *`` hides no builtin."""

from __future__ import annotations

import builtins
import pickle
import subprocess
import sys

import sqlite_session_safe as sss
from sqlite_session_safe.coordination.database import open_database
from sqlite_session_safe.coordination.db_errors import ConflictError

#: new name -> the name it stands beside (both stay importable).
ALIASES = {
    "open_database": "open",
    "OptimisticWriteFailed": "ConflictError",
    "SQLiteProtocolError": "ProtocolError",
}


def test_aliases_are_the_same_objects():
    for new, old in ALIASES.items():
        assert getattr(sss, new) is getattr(sss, old), (new, old)
    assert sss.open is open_database
    assert sss.OptimisticWriteFailed is ConflictError
    assert ConflictError.__name__ == "OptimisticWriteFailed"  # tracebacks show the clear name
    assert sss.SQLiteProtocolError.primary_code == 15
    assert sss.error_class_for(15) is sss.SQLiteProtocolError


def test_optimistic_write_failed_pickles_under_either_name():
    err = sss.ConflictError("gave up", attempts=3, reason="x changed")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is sss.OptimisticWriteFailed
    assert (str(back), back.attempts, back.reason) == ("gave up", 3, "x changed")


def test_optimistic_write_failed_is_not_a_changeset_conflict():
    # the point of the new name: it is unrelated to the apply conflict family
    assert not issubclass(sss.OptimisticWriteFailed, sss.ConflictAbort)
    assert not issubclass(sss.SQLiteProtocolError, sss.LockError)


def test_star_import_does_not_shadow_builtins():
    assert "open" not in sss.__all__
    shadowed = sorted(set(sss.__all__) & set(dir(builtins)))
    assert not shadowed, f"from sqlite_session_safe import * would hide builtins: {shadowed}"
    namespace: dict[str, object] = {}
    exec("from sqlite_session_safe import *", namespace)
    assert "open" not in namespace
    assert namespace["open_database"] is sss.open_database


def test_star_import_in_a_fresh_interpreter_keeps_builtin_open(tmp_path):
    code = ("from sqlite_session_safe import *\n"
            "import builtins\n"
            "assert open is builtins.open, open\n"
            f"with open({str(tmp_path / 'f.txt')!r}, 'w') as f:\n"
            "    f.write('ok')\n"
            "db = open_database(" + repr(str(tmp_path / "app.db")) + ")\n"
            "db.close()\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "f.txt").read_text() == "ok"


def test_all_is_complete_and_unique():
    assert len(sss.__all__) == len(set(sss.__all__))
    missing = [name for name in sss.__all__ if not hasattr(sss, name)]
    assert not missing
    # the dozen names a newcomer needs come first (the docstring lists them)
    start = sss.__all__[: sss.__all__.index("Error") + 1]
    for name in ("connect", "Connection", "Cursor", "Session", "Changeset", "open_database",
                 "Database", "WriteTx", "WriteResult", "ReadTx", "replicate", "Error"):
        assert name in start
        assert name in (sss.__doc__ or "")


def test_all_public_names_of_the_submodules_are_exported():
    """What the layers' own __all__ offer to users is reachable from the top
    (except the internals the top module deliberately leaves out)."""
    from sqlite_session_safe import sessions

    assert set(sessions.__all__) <= set(sss.__all__)


def test_aio_star_import_keeps_builtin_open():
    import sqlite_session_safe.aio as aio

    assert aio.open is aio.open_database
    assert "open" not in aio.__all__ and "open_database" in aio.__all__
    # Warning is PEP 249's name (aiosqlite and the stdlib sqlite3 export it too)
    shadowed = sorted(set(aio.__all__) & set(dir(builtins)) - {"__version__", "Warning"})
    assert not shadowed, shadowed
    namespace: dict[str, object] = {}
    exec("from sqlite_session_safe.aio import *", namespace)
    assert "open" not in namespace
