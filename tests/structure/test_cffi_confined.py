"""The cffi module's ``lib`` and ``ffi`` (untyped: ``Any``) stay in the
binding layer, as PyNaCl keeps them in ``nacl.bindings``: the layers above
call typed functions (``binding/capi.py``, the session extension's wrappers
``binding/session_handle.py``, ``changegroup.py``, ``changeset_*.py``, and
the binding's classes), so ``mypy --strict`` checks their calls for real.
No module above the binding is exempt.

Read from the source with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sqlite_session_safe

PACKAGE = Path(sqlite_session_safe.__file__).parent
NAME = "sqlite_session_safe"
#: The modules that may import the cffi module or its ``lib``/``ffi``.
CFFI_MODULES = {f"{NAME}._native", f"{NAME}.binding.raw"}


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
    return cffi_imports_in(path.read_text(encoding="utf-8"), path)


def cffi_imports_in(source: str, path: Path) -> list[str]:
    """Each import in ``source`` (the text of module ``path``) that reaches
    the cffi module's objects."""
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name in CFFI_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(path, node)
            for alias in node.names:
                if f"{module}.{alias.name}" in CFFI_MODULES:  # the module itself
                    found.append(f"{module}.{alias.name} (line {node.lineno})")
                elif alias.name in ("lib", "ffi") and (module == NAME or module.startswith(NAME + ".")):
                    # also a module that re-exports them (binding/capi.py imports lib)
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


def test_the_scan_sees_an_import_above() -> None:
    """The scanner on the text of a module placed above the binding (only
    its path is used: nothing is written): every way of reaching
    ``lib``/``ffi`` is found, typed binding names are not."""
    probe = PACKAGE / "sessions" / "_probe.py"
    source = (
        "from ..binding.raw import lib\n"
        "from ..binding.raw import ffi as _ffi\n"
        "from ..binding import raw\n"
        "from .. import _native\n"
        "from .._native import lib as _lib\n"
        "import sqlite_session_safe.binding.raw\n"
        "from ..binding.capi import lib as _re_exported\n"
        "from ..binding.changeset_io import Reader, check_rc\n"
        "from ..binding.capi import exec_sql\n"
    )
    found = cffi_imports_in(source, probe)
    assert len(found) == 7, found


def test_no_cffi_above_the_binding() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): found
        for p in _above_binding()
        if (found := cffi_imports(p))
    }
    assert not offenders, (
        "lib/ffi imported above the binding layer; add a typed function to "
        f"binding/capi.py (or a binding class) and call that: {offenders}"
    )


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
