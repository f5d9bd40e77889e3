"""Pages generated from the code at build time, so they cannot drift from it.

* ``.. sss-exceptions::`` -- the exception hierarchy under ``sss.Error``
  (every subclass the package defines, found by walking ``__subclasses__()``
  after importing every public module), each with the SQLite result codes it
  stands for and its reference entry.
* ``.. sss-result-codes::`` -- SQLite's primary result codes, and the native
  and DB-API class each becomes (``error_class_for`` and ``dbapi.translate``).
* ``.. sss-constants::`` -- the ``SQLITE_*`` constants the package exports.
* Members named ``sss_...`` (for the package's own layers) are left out of
  the reference.
* A check, at the end of reading: every public name of ``sqlite_session_safe``,
  ``sqlite_session_safe.dbapi`` and ``sqlite_session_safe.aio`` (classes and
  functions; constants are in the tables above) is documented somewhere, so a
  new name without a reference entry fails the build (warnings are errors).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import sqlite_session_safe as sss
from sqlite_session_safe import dbapi
from sqlite_session_safe.binding import constants as _constants
from sqlite_session_safe.binding import dbconfig as _dbconfig
from sqlite_session_safe.faces.dbapi import errors as _dbapi_errors

logger = logging.getLogger(__name__)

#: The modules whose public names the reference must cover, in the order a
#: class's documented name is looked for (the first module exporting it wins).
PUBLIC_MODULES = ("sqlite_session_safe", "sqlite_session_safe.dbapi", "sqlite_session_safe.aio")


def _modules() -> list[Any]:
    return [importlib.import_module(name) for name in PUBLIC_MODULES]


def public_names(obj: object) -> list[str]:
    """Every dotted name under which the public modules export ``obj``
    (``sqlite_session_safe.X``): the first is the one documented (in the
    first module exporting it, the object's own ``__name__`` if exported
    under it), the others are aliases."""
    names = []
    for module in _modules():
        found = [n for n in module.__all__ if getattr(module, n, None) is obj]
        found.sort(key=lambda n: n != getattr(obj, "__name__", None))
        names += [f"{module.__name__}.{n}" for n in found]
    return names


def public_name(obj: object) -> str | None:
    """The documented dotted name of a public object, None if no public
    module exports it."""
    names = public_names(obj)
    return names[0] if names else None


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    paragraph = doc.split("\n\n")[0]
    return " ".join(paragraph.split())


def _subclasses(cls: type) -> Iterator[type]:
    # sorted for a stable page: by the public name, else the module path
    def key(c: type) -> str:
        return public_name(c) or f"~{c.__module__}.{c.__qualname__}"

    yield from sorted(cls.__subclasses__(), key=key)


def _dbapi_class_for(code: int) -> type[BaseException]:
    """The exception the DB-API module raises for SQLite's primary ``code``."""
    native = sss.error_class_for(code)("example", code)
    return type(_dbapi_errors.translate(native))


def _codes_of(cls: type) -> list[str]:
    """The SQLite primary result code names a class stands for."""
    names = sss.PRIMARY_RESULT_CODES
    if cls is sss.SQLiteError:
        return ["any code without a class of its own"]
    if issubclass(cls, sss.SQLiteError) and "primary_code" in cls.__dict__:
        return [names[cls.primary_code]]
    if issubclass(cls, dbapi.Error):
        return [names[c] for c in sorted(names) if _dbapi_class_for(c) is cls]
    return []


def _role(obj: object) -> str:
    names = public_names(obj)
    if not names:
        return f"``{obj.__module__}.{obj.__qualname__}`` (internal)"  # type: ignore[attr-defined]
    # aliases exported by the same module (sss.ConflictError beside
    # sss.OptimisticWriteFailed), not the dbapi/aio re-exports
    module = names[0].rpartition(".")[0]
    aliases = [n.rpartition(".")[2] for n in names[1:] if n.rpartition(".")[0] == module]
    also = f" (also ``{'``, ``'.join(aliases)}``)" if aliases else ""
    return f":exc:`~{names[0]}`{also}"


class _Generated(SphinxDirective):
    """A directive whose output is reST text generated from the code."""

    has_content = False

    def lines(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> list[nodes.Node]:
        container = nodes.container()
        self.state.nested_parse(StringList(self.lines(), source=f"<{self.name}>"),
                                self.content_offset, container)
        return list(container.children)


class ExceptionTree(_Generated):
    """The hierarchy under ``sss.Error``, then a reference entry per class."""

    def lines(self) -> list[str]:
        lines: list[str] = []

        def tree(cls: type, depth: int) -> None:
            pad = "   " * depth
            codes = _codes_of(cls)
            code_text = f" [{', '.join(f'``{c}``' for c in codes)}]" if codes else ""
            bases = [b for b in cls.__bases__ if not issubclass(b, sss.Error)]
            also = f" (also {', '.join(f'``{b.__qualname__}``' for b in bases)})" if bases else ""
            lines.append(f"{pad}* {_role(cls)}{code_text}{also}: {_first_line(cls)}")
            lines.append("")
            for sub in _subclasses(cls):
                tree(sub, depth + 1)

        tree(sss.Error, 0)
        lines += ["", ".. rubric:: Reference", ""]
        seen: set[int] = set()

        def entries(cls: type) -> None:
            name = public_name(cls)
            if name is not None and id(cls) not in seen:
                seen.add(id(cls))
                lines.extend([f".. autoexception:: {name}", "   :members:",
                              "   :show-inheritance:", ""])
            for sub in _subclasses(cls):
                entries(sub)

        entries(sss.Error)
        return lines


class ResultCodes(_Generated):
    """SQLite's primary result codes and the classes they become."""

    def lines(self) -> list[str]:
        lines = [".. list-table::", "   :header-rows: 1", "", "   * - code",
                 "     - SQLite's name", "     - native class (``sss``)",
                 "     - DB-API class (``sss.dbapi``)"]
        for code, name in sorted(sss.PRIMARY_RESULT_CODES.items()):
            dbapi_cls = _dbapi_class_for(code)
            dbapi_text = _role(dbapi_cls) if public_name(dbapi_cls) else f"``{dbapi_cls.__qualname__}``"
            lines += [f"   * - {code}", f"     - ``{name}``", f"     - {_role(sss.error_class_for(code))}",
                      f"     - {dbapi_text}"]
        return lines


class Constants(_Generated):
    """The ``SQLITE_*`` constants ``sqlite_session_safe`` exports, with values."""

    def lines(self) -> list[str]:
        lines: list[str] = []
        for title, module in (("For user functions and hooks (authorizer actions, limits, ...)",
                               _constants),
                              ("Options of ``Connection.getconfig`` / ``setconfig``", _dbconfig)):
            lines += [f".. rubric:: {title}", "", ".. list-table::", "   :header-rows: 1", "",
                      "   * - name", "     - value"]
            for name in module.__all__:
                lines += [f"   * - ``sss.{name}``", f"     - ``{getattr(sss, name)!r}``"]
            lines.append("")
        return lines


def public_objects() -> dict[str, object]:
    """Every class and function the public modules export (defined in this
    package), by their documented name; constants and re-exported stdlib
    objects excluded."""
    found: dict[str, object] = {}
    for module in _modules():
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("sqlite_session_safe"):
                continue
            found.setdefault(f"{module.__name__}.{name}", obj)
    return found


def _resolve(dotted: str) -> object | None:
    module_name, _, attr = dotted.rpartition(".")
    while module_name:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            module_name, _, head = module_name.rpartition(".")
            attr = f"{head}.{attr}"
            continue
        obj: object = module
        for part in attr.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj
    return None


def check_coverage(app: Sphinx, env: BuildEnvironment) -> None:
    """Warn (an error under -W) for each public class or function that no
    page documents."""
    documented = {id(_resolve(name)) for name in env.get_domain("py").objects}
    for name, obj in public_objects().items():
        if id(obj) not in documented:
            logger.warning("public name %s has no reference entry (add it to a page under "
                           "docs/reference/)", name)


def _adjust_napoleon(app: Sphinx) -> None:
    """Narrow two of napoleon's handlers to what this package needs.

    * ``autodoc-skip-member`` is dropped: it only serves the
      ``napoleon_include_*`` options (off here), and it reads
      ``__qualname__`` of every class attribute, which the DB-API cursor's
      ``connection`` placeholder refuses (it raises the stdlib's error on
      any attribute access, as a cursor whose ``__init__`` did not run must).
    * ``autodoc-process-docstring`` is skipped for attributes, data and
      properties: napoleon reads their first ``word: text`` as a type
      annotation, and this package's attribute comments are prose
      (``#: UPDATE/DELETE: the row exists but ...``).
    """
    from sphinx.ext import napoleon

    listeners = list(app.events.listeners.get("autodoc-skip-member", []))
    for listener in listeners:
        if listener.handler is napoleon._skip_member:
            app.disconnect(listener.id)
    for listener in list(app.events.listeners.get("autodoc-process-docstring", [])):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
            app.connect("autodoc-process-docstring", _napoleon_except_attributes,
                        priority=listener.priority)


def _napoleon_except_attributes(app: Sphinx, what: str, name: str, obj: object, options: Any,
                                lines: list[str]) -> None:
    from sphinx.ext import napoleon

    if what not in ("attribute", "data", "property"):
        napoleon._process_docstring(app, what, name, obj, options, lines)


#: The prefix of a member of a user-facing class that is there for the
#: package's own layers (``Connection.sss_db``, ``Cursor.sss_fetch_checks``):
#: public to the other modules, not to users, so not in the reference.
PACKAGE_INTERNAL_PREFIX = "sss_"


def skip_package_internal(app: Sphinx, what: str, name: str, obj: object,
                          skip: bool, options: Any) -> bool | None:
    """``autodoc-skip-member``: leave out ``sss_`` members (None: autodoc decides)."""
    return True if name.startswith(PACKAGE_INTERNAL_PREFIX) else None


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("autodoc-skip-member", skip_package_internal)
    app.connect("builder-inited", _adjust_napoleon)
    app.add_directive("sss-exceptions", ExceptionTree)
    app.add_directive("sss-result-codes", ResultCodes)
    app.add_directive("sss-constants", Constants)
    app.connect("env-check-consistency", check_coverage)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
