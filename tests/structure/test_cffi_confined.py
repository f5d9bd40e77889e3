"""The cffi module's ``lib`` and ``ffi`` (untyped: ``Any``) stay in the
binding layer, as PyNaCl keeps them in ``nacl.bindings``: the layers above
call typed functions (``binding/capi.py`` and the binding's classes), so
``mypy --strict`` checks their calls for real.

Read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sqlite_session_safe

PACKAGE = Path(sqlite_session_safe.__file__).parent
NAME = "sqlite_session_safe"
#: The modules that may import the cffi module or its ``lib``/``ffi``.
CFFI_MODULES = {f"{NAME}._native", f"{NAME}.binding.raw"}

#: Modules above the binding that still call the session extension through
#: ``lib``/``ffi`` themselves (the sessions layer's own C plumbing, not yet
#: moved behind typed functions in binding).  The list may only shrink:
#: ``test_the_allowance_is_not_stale`` fails when a module no longer needs it.
STILL_ALLOWED = {
    "sessions/_native.py",
    "sessions/_callbacks.py",
    "sessions/session.py",
    "sessions/changeset.py",
    "sessions/stream.py",
    "sessions/group.py",
    "sessions/apply_core.py",
    "sessions/apply_plan.py",
    "sessions/chunked.py",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([NAME, *parts])


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def cffi_imports(path: Path) -> list[str]:
    """Each import in ``path`` that reaches the cffi module's objects."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in CFFI_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            for alias in node.names:
                if f"{module}.{alias.name}" in CFFI_MODULES:  # the module itself
                    found.append(f"{module}.{alias.name} (line {node.lineno})")
                elif module in CFFI_MODULES and alias.name in ("lib", "ffi"):
                    found.append(f"{module}.{alias.name} (line {node.lineno})")
    return found


def _above_binding() -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if p.relative_to(PACKAGE).parts[0] != "binding"
    ]


def test_the_scan_sees_an_import() -> None:
    """The scanner itself: the binding modules it exempts do import ``lib``."""
    assert cffi_imports(PACKAGE / "binding" / "capi.py")
    assert cffi_imports(PACKAGE / "binding" / "raw.py")


def test_no_cffi_above_the_binding() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): found
        for p in _above_binding()
        if (found := cffi_imports(p)) and p.relative_to(PACKAGE).as_posix() not in STILL_ALLOWED
    }
    assert not offenders, (
        "lib/ffi imported above the binding layer; add a typed function to "
        f"binding/capi.py (or a binding class) and call that: {offenders}"
    )


@pytest.mark.parametrize("name", sorted(STILL_ALLOWED))
def test_the_allowance_is_not_stale(name: str) -> None:
    assert cffi_imports(PACKAGE / name), f"{name} no longer imports lib/ffi: drop it from STILL_ALLOWED"


def test_binding_imports_nothing_above_it() -> None:
    """Not even for type checkers: ``Connection.session`` is the sessions
    layer's subclass's method, not a stub in binding filled in from above."""
    upward = {}
    for path in sorted((PACKAGE / "binding").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                module = _absolute(path, node)
                if module.startswith(NAME + ".") and module.split(".")[1] not in (
                    "binding", "_native", "_hotpath"
                ):
                    upward[f"{path.name}:{node.lineno}"] = module
    assert not upward, upward


def test_connection_session_is_a_plain_method() -> None:
    from sqlite_session_safe.binding.connection import Connection as BindingConnection
    from sqlite_session_safe.sessions.connection import Connection

    assert "session" not in vars(BindingConnection)
    assert "session" in vars(Connection) and sqlite_session_safe.Connection is Connection
