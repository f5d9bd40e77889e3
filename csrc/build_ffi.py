"""cffi build script for ``sqlite_session_safe._native`` (out-of-line, API mode).

CMake runs ``python csrc/build_ffi.py OUT.c`` at build time; the generated C file
is compiled together with the helpers in ``csrc/*.c`` and linked against the
static SQLite engine. This script is not installed with the package.

What goes into the cdef, in order:

1. every integer ``#define SQLITE_*`` of ``vendor/sqlite/sqlite3.h`` (result
   codes, open flags, session constants, ...), as ``#define NAME ...`` so the
   C compiler supplies the values;
2. ``csrc/*.cdef``: the declarations of the SQLite functions we call,
   ``sqlite3_core.cdef`` first (it declares the types the others use);
3. the part of each ``csrc/*.h`` between ``/* cdef-begin */`` and
   ``/* cdef-end */``: the C helpers.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import cffi

CSRC = Path(__file__).resolve().parent
SQLITE_H = CSRC.parent / "vendor" / "sqlite" / "sqlite3.h"

MODULE_NAME = "sqlite_session_safe._native"

# An integer constant: a number, or an expression of numbers, other SQLITE_
# names, parentheses, shifts and ors.  Excludes strings and pointer casts
# (SQLITE_VERSION, SQLITE_STATIC, ...).
_INT_DEFINE = re.compile(
    r"^#\s*define\s+(SQLITE_[A-Z0-9_]+)\s+(-?[0-9(][-0-9A-Z_ |<()x]*)\s*(?:/\*.*)?$"
)
# Defines that look like integers but are not plain C int constants.
_NOT_CONSTANTS = {
    "SQLITE_VERSION_NUMBER",  # exposed through sqlite3_libversion_number()
    "SQLITE_WASI",  # defined only when compiling for WASI
}


def integer_constants(header: Path = SQLITE_H) -> list[str]:
    names: list[str] = []
    for line in header.read_text(encoding="utf-8").splitlines():
        m = _INT_DEFINE.match(line.strip())
        if m and m.group(1) not in _NOT_CONSTANTS and m.group(1) not in names:
            names.append(m.group(1))
    return names


def helper_headers() -> list[Path]:
    return sorted(p for p in CSRC.glob("*.h") if "/* cdef-begin */" in p.read_text("utf-8"))


def cdef_section(header: Path) -> str:
    text = header.read_text(encoding="utf-8")
    return text.split("/* cdef-begin */", 1)[1].split("/* cdef-end */", 1)[0]


def make_ffi() -> cffi.FFI:
    ffi = cffi.FFI()
    ffi.cdef("\n".join(f"#define {name} ..." for name in integer_constants()))
    core = CSRC / "sqlite3_core.cdef"
    for cdef in [core, *sorted(set(CSRC.glob("*.cdef")) - {core})]:
        ffi.cdef(cdef.read_text(encoding="utf-8"))
    headers = helper_headers()
    for header in headers:
        ffi.cdef(cdef_section(header))
    includes = "\n".join(f'#include "{h.name}"' for h in headers)
    ffi.set_source(MODULE_NAME, f'#include "sqlite3.h"\n{includes}\n')
    return ffi


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: build_ffi.py OUTPUT.c")
    make_ffi().emit_c_code(sys.argv[1])
