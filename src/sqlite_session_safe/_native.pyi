# Type stub for the cffi-generated extension module (built from csrc/ by
# csrc/build_ffi.py).  `ffi` is a cffi.FFI instance; `lib` exposes the SQLite
# functions and constants declared in csrc/*.cdef and the C helpers of csrc/*.h.
from typing import Any

ffi: Any
lib: Any
