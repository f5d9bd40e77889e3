"""Objects talk to each other through names without a leading underscore:
a ``_name`` is read only by the class that defines it (``self._name``,
``cls._name``), so a reader can change it knowing every use is in sight.
What another class or module needs gets a typed name of its own (on a
user-facing class, an ``sss_`` one the reference leaves out: docs/README.md).

Two things fail, read from the source with ``ast`` (nothing is imported):

* ``x._name`` where ``x`` is not ``self`` or ``cls`` (``other._data``,
  ``self._con._lock``, ``Base._helper``), except ``super()._name`` inside a
  method of that same name (an override calling the one it overrides);
* ``from .mod import _name`` of a private name that is not a module (a
  package's private modules, ``faces/cli/_query.py`` or the compiled
  ``_hotpath``, are imported by the package that holds them).

Dunder names (``__init__``, ``__class__``) are not private.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlite_session_safe

PACKAGE = Path(sqlite_session_safe.__file__).parent

#: (file under the package, the attribute expression) -> why it must stay.
ALLOWED: dict[tuple[str, str], str] = {
    # aiosqlite's Connection._conn / _connection (the DB-API connection):
    # aio.Connection offers them as aiosqlite does, for the code that reads
    # them (SQLAlchemy's aiosqlite dialect; tests/faces/test_aio.py checks
    # they exist), so they are part of its interface, not its internals.
    ("faces/aio/connection.py", "target._conn"): "aiosqlite's Connection._conn",
    ("faces/aio/connection.py", "self._conn._connection"): "aiosqlite's Connection._connection",
    # Row.__eq__ compares another Row (isinstance-checked) field by field,
    # as the stdlib's sqlite3.Row does: the same class's own fields.
    ("faces/dbapi/row.py", "other._description"): "Row.__eq__ on another Row",
    ("faces/dbapi/row.py", "other._data"): "Row.__eq__ on another Row",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(path: Path, node: ast.ImportFrom, name: str) -> bool:
    """Whether ``from <node's module> import name`` in ``path`` names a module."""
    base = path.parent
    for _ in range(max(node.level - 1, 0)):
        base = base.parent
    if node.module:
        base = base.joinpath(*node.module.split("."))
    target = base / name
    return (target.with_suffix(".py").exists() or target.with_suffix(".pyi").exists()
            or (target / "__init__.py").exists())


class _Scan(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.rel = path.relative_to(PACKAGE).as_posix()
        self.functions: list[str] = []
        self.found: list[str] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        if not _private(node.attr):
            return
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
            return
        if (isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name)
                and owner.func.id == "super" and self.functions
                and self.functions[-1] == node.attr):
            return
        text = ast.unparse(node)
        if (self.rel, text) not in ALLOWED:
            self.found.append(f"{self.rel}:{node.lineno}: {text}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if _private(alias.name) and not _is_module(self.path, node, alias.name):
                module = "." * node.level + (node.module or "")
                self.found.append(f"{self.rel}:{node.lineno}: from {module} import {alias.name}")


def private_uses_in(source: str, path: Path) -> list[str]:
    """Each use in ``source`` (the text of module ``path``) of another
    object's private name, as ``file:line: expression``."""
    scan = _Scan(path)
    scan.visit(ast.parse(source, str(path)))
    return scan.found


def test_the_scan_sees_each_kind() -> None:
    """The scanner itself, on text placed in the package (only its path is
    used: nothing is written)."""
    probe = PACKAGE / "coordination" / "_probe.py"
    source = (
        "from .write import _helper\n"          # a private name: found
        "from ..faces.cli import _query\n"      # a private module: not
        "from .. import _hotpath\n"             # the compiled module: not
        "class A(B):\n"
        "    def _step(self):\n"
        "        self._x = other._y\n"          # found (other._y)
        "        cls._z; self.con._db\n"        # found (self.con._db)
        "        super()._step()\n"             # the override's base: not
        "        super()._other()\n"            # found
        "        return Base._hook(self)\n"     # found
        "    def __eq__(self, other):\n"
        "        return self.__dict__ == other.__dict__\n"   # dunders: not
    )
    found = private_uses_in(source, probe)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from .write import _helper", "other._y", "self.con._db",
        "super()._other", "Base._hook",
    ], found
    assert found[0].startswith("coordination/_probe.py:1: ")


def test_no_private_names_across_objects() -> None:
    found = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        for use in private_uses_in(path.read_text(encoding="utf-8"), path)
    ]
    assert not found, (
        "another object's private name used; give what is needed a typed name "
        "without the underscore (an sss_ one on a user-facing class):\n" + "\n".join(found)
    )


def test_the_allowlist_is_still_needed() -> None:
    """An entry whose use is gone is removed, so the list stays small."""
    seen = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                seen.add((rel, ast.unparse(node)))
    assert not set(ALLOWED) - seen, set(ALLOWED) - seen
