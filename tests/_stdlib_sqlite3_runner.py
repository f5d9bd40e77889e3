"""Run CPython's own ``sqlite3`` test suite against a DB-API module.

    python tests/_stdlib_sqlite3_runner.py [--module sqlite_session_safe.dbapi] [--verbose]

The tests are the running interpreter's own (``Lib/test/test_sqlite3`` on
3.11+, ``Lib/sqlite3/test`` on 3.10): nothing of them is copied here.  With
``--module NAME`` the module NAME is put in place of ``sqlite3`` (and its
``dbapi2``) in ``sys.modules`` before any test module is imported, so every
``import sqlite3`` in the tests gets it; without it the stdlib module itself
runs (the baseline).  The last line printed is one JSON object: the counts
and the ids of the tests that failed or raised, which
``tests/faces/test_dbapi_stdlib_suite.py`` compares; exit status 3 when the
interpreter has no ``test`` package (some builds leave it out).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import io
import json
import os
import sqlite3  # the stdlib's, loaded first: ours derives its errors from it
import sys
import tempfile
import unittest
import warnings
from typing import Any

_STDLIB_DIR = os.path.dirname(sqlite3.__file__)


def _substitute(name: str) -> None:
    module = importlib.import_module(name)
    sys.modules["sqlite3"] = module
    sys.modules["sqlite3.dbapi2"] = getattr(module, "dbapi2", module)


def _load_suite() -> unittest.TestSuite:
    loader = unittest.TestLoader()
    if sys.version_info >= (3, 11):
        import test.test_sqlite3 as package

        return loader.loadTestsFromModule(package, pattern="test*")
    # 3.10: the tests are the stdlib package's subpackage sqlite3.test; load it
    # from its directory under that name, whatever "sqlite3" now is.
    test_dir = os.path.join(_STDLIB_DIR, "test")
    std_module = sys.modules.get("sqlite3")
    tests_spec = importlib.util.spec_from_file_location(
        "sqlite3.test", os.path.join(test_dir, "__init__.py"), submodule_search_locations=[test_dir]
    )
    assert tests_spec is not None and tests_spec.loader is not None
    tests_pkg = importlib.util.module_from_spec(tests_spec)
    sys.modules["sqlite3.test"] = tests_pkg
    tests_spec.loader.exec_module(tests_pkg)
    if std_module is not None and not hasattr(std_module, "test"):
        try:
            std_module.test = tests_pkg
        except AttributeError:
            pass
    import test.test_sqlite as loader_module

    return loader_module.load_tests(loader, None, None)  # type: ignore[no-any-return]


def _flatten(suite: Any) -> list[Any]:
    if isinstance(suite, unittest.TestSuite):
        return [t for inner in suite for t in _flatten(inner)]
    return [suite]


def _test_id(test: Any) -> str:
    """"test.test_sqlite3.test_dbapi.ModuleTests.test_api_level" ->
    "test_dbapi.ModuleTests.test_api_level" (file, class, method); a failed
    subtest counts as its test."""
    test = getattr(test, "test_case", test)
    parts = test.id().split(".")
    return ".".join(parts[-3:])


#: Exit status when the interpreter has no test package to run.
NO_TESTS = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", help="module to run in place of sqlite3 (default: the stdlib)")
    parser.add_argument("--verbose", action="store_true", help="print unittest's output to stderr")
    parser.add_argument("--only", nargs="*", default=[],
                        help="run only the tests whose id contains one of these strings")
    args = parser.parse_args(argv)
    try:
        import test.support  # noqa: F401
    except ImportError:
        print(json.dumps({"python": ".".join(map(str, sys.version_info[:3])),
                          "error": "this Python has no test package (Lib/test)"}))
        return NO_TESTS
    if args.module:
        _substitute(args.module)
    warnings.simplefilter("ignore")
    # Some tests create files in the current directory (TESTFN): run in a
    # temporary one.
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        suite = _load_suite()
        if args.only:
            suite = unittest.TestSuite(
                t for t in _flatten(suite) if any(part in t.id() for part in args.only)
            )
        stream: Any = sys.stderr if args.verbose else io.StringIO()
        result = unittest.TextTestRunner(stream=stream, verbosity=2 if args.verbose else 0).run(suite)
        os.chdir(os.path.dirname(tmp))
    failed = sorted({_test_id(t) for t, _ in result.failures + result.errors})
    details = {_test_id(t): tb.strip().splitlines()[-1][:300] for t, tb in result.failures + result.errors}
    unexpected = sorted(_test_id(t) for t in result.unexpectedSuccesses)
    report = {
        "python": ".".join(map(str, sys.version_info[:3])),
        "module": args.module or "sqlite3",
        "run": result.testsRun,
        "skipped": len(result.skipped),
        "expected_failures": len(result.expectedFailures),
        "failed": failed,
        "details": details,
        "unexpected_successes": unexpected,
        "passed": result.testsRun - len(result.skipped) - len(failed) - len(result.expectedFailures),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
