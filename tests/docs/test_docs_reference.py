"""The reference names the SQLite C function behind each method of the
binding and sessions layers, as apsw's does ("Calls ``sqlite3_backup_step``").

Checked from the source: a public method or function that calls SQLite
through ``lib`` (directly, or through a private method of its own class), or
through one of the binding's typed wrappers (the sessions layer calls the
session extension only that way), must name a ``sqlite3*`` function in its
docstring; so must each of those wrappers.
"""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import sqlite_session_safe as sss

PACKAGE = Path(sss.__file__).resolve().parent

#: module -> the classes (by name) whose methods are public API.
CLASSES = {
    "binding/connection.py": {"Connection"},
    "binding/cursor.py": {"Cursor"},
    "binding/blob.py": {"Blob"},
    "binding/library.py": set(),
    "sessions/session.py": {"Session"},
    "sessions/changeset.py": {"ChangesetBase", "Changeset", "Patchset"},
    "sessions/group.py": {"ChangeGroup", "Rebaser"},
    "sessions/apply.py": set(),
    "sessions/stream.py": set(),
    # The session extension's typed wrappers (every public function counts).
    "binding/session_handle.py": {"SessionHandle"},
    "binding/changegroup.py": {"ChangeGroupHandle", "RebaserHandle"},
    "binding/changeset_iter.py": {"ChangesetIter"},
    "binding/changeset_ops.py": {"ConcatState"},
    "binding/changeset_format.py": {"Formatter"},
    "binding/changeset_apply.py": {"ApplyCall"},
    "binding/capi.py": set(),
}

#: Method names not in the reference: private, and the package's own (sss_).
_INTERNAL = ("_", "sss_")

#: Modules whose public functions are wrappers (not only those in sss.__all__).
WRAPPER_MODULES = {rel for rel in CLASSES if rel.startswith("binding/")
                   and rel not in ("binding/connection.py", "binding/cursor.py", "binding/blob.py",
                                   "binding/library.py")}


def _c_calls(node: ast.AST) -> set[str]:
    return {n.attr for n in ast.walk(node)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "lib" and n.attr.startswith("sqlite3")}


def _called_names(node: ast.AST) -> set[str]:
    """Names called as ``f(...)`` or ``x.f(...)`` (a class called names its
    constructor)."""
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            if isinstance(n.func, ast.Name):
                names.add(n.func.id)
            elif isinstance(n.func, ast.Attribute):
                names.add(n.func.attr)
    return names


def _self_calls(node: ast.AST) -> set[str]:
    return {n.func.attr for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "self"}


def _binding_wrappers() -> dict[str, set[str]]:
    """Name -> the C functions it calls, for the public functions and
    methods of the wrapper modules (a constructor under its class's name)."""
    found: dict[str, set[str]] = {}
    for rel in WRAPPER_MODULES:
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        scopes: list[tuple[str | None, list[ast.stmt]]] = [(None, tree.body)]
        scopes += [(c.name, c.body) for c in tree.body if isinstance(c, ast.ClassDef)]
        for cls, body in scopes:
            methods = {f.name: f for f in body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for name, fn in methods.items():
                calls = _c_calls(fn)
                for helper in _self_calls(fn):
                    if helper.startswith(_INTERNAL) and helper in methods:
                        calls |= _c_calls(methods[helper])
                key = cls if name == "__init__" and cls else name
                if calls and not key.startswith("_"):
                    found.setdefault(key, set()).update(calls)
    return found


def _wrappers() -> list[tuple[str, set[str], str]]:
    """(where, the C functions called, docstring) for every public method and
    function of the modules above that calls SQLite."""
    through = _binding_wrappers()
    out = []
    for rel, classes in CLASSES.items():
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        scopes: list[tuple[str, list[ast.stmt]]] = [("", tree.body)]
        scopes += [(f"{c.name}.", c.body) for c in tree.body
                   if isinstance(c, ast.ClassDef) and c.name in classes]
        for prefix, body in scopes:
            methods = {f.name: f for f in body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
            for name, fn in methods.items():
                # sss_ methods are the package's own (not in the reference):
                # counted in the public methods that call them, as _ ones are.
                if name.startswith(_INTERNAL) and name != "__init__":
                    continue
                if not prefix and name not in sss.__all__ and rel not in WRAPPER_MODULES:
                    continue
                calls = _c_calls(fn)
                for helper in _self_calls(fn):
                    if helper.startswith(_INTERNAL) and helper in methods:
                        calls |= _c_calls(methods[helper])
                if rel.startswith("sessions/"):  # through the binding's wrappers
                    used = _called_names(fn)
                    for helper in _self_calls(fn):
                        if helper.startswith(_INTERNAL) and helper in methods:
                            used |= _called_names(methods[helper])
                    for called in used & through.keys():
                        calls |= through[called]
                if not calls:
                    continue
                if name == "__init__":  # the class docstring speaks for the constructor
                    cls = next(c for c in tree.body if isinstance(c, ast.ClassDef) and c.name == prefix[:-1])
                    doc = ast.get_docstring(cls) or ""
                else:
                    doc = ast.get_docstring(fn) or ""
                    if not doc:  # a property setter: its getter holds the docstring
                        doc = next((ast.get_docstring(f) or "" for f in body
                                    if isinstance(f, ast.FunctionDef) and f.name == name
                                    and ast.get_docstring(f)), "")
                out.append((f"{rel}: {prefix}{name}", calls, doc))
    return out


def test_wrappers_are_found():
    found = {where for where, _, _ in _wrappers()}
    assert "binding/connection.py: Connection.serialize" in found
    assert "sessions/group.py: Rebaser.rebase" in found
    assert "sessions/session.py: Session.changeset" in found
    assert "binding/session_handle.py: SessionHandle.diff" in found
    assert "binding/changeset_ops.py: invert" in found
    assert len(found) >= 80


def test_every_wrapper_names_its_c_function():
    missing = [f"{where} calls {sorted(calls)}" for where, calls, doc in _wrappers()
               if "sqlite3" not in doc]
    assert not missing, "name the SQLite C function in the docstring (\"Calls ``sqlite3_x``.\"):\n" + \
        "\n".join(missing)


def test_named_c_functions_exist():
    """A name in a "Calls" line is a function of SQLite's C API (the cffi
    module declares every one the package uses)."""
    from sqlite_session_safe._native import lib

    for where, _, doc in _wrappers():
        for word in doc.replace("``", " ").split():
            word = word.strip(".,;:()")
            if word.startswith("sqlite3") and "*" not in word and "/" not in word:
                assert hasattr(lib, word), f"{where}: {word} is not a SQLite function"


def test_public_objects_have_docstrings():
    """Every public class, function, method and property of the package says
    what it is (the API reference is generated from these)."""
    missing = []
    for name in sss.__all__:
        obj = getattr(sss, name)
        # A type alias (SessionFilter = Callable[[str], object]) is not a
        # class, though Python 3.10's inspect.isclass says it is; its ``#:``
        # comment documents it.
        if isinstance(obj, types.GenericAlias):
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not inspect.getdoc(obj):
            missing.append(name)
        if inspect.isclass(obj) and obj.__module__.startswith("sqlite_session_safe"):
            for attr, value in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if (inspect.isfunction(value) or isinstance(value, property)) and not value.__doc__:
                    missing.append(f"{name}.{attr}")
    assert not missing, missing
