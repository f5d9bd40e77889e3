"""Changeset wire-format pieces for tests that hold the package's own
readers of the format (``sss_changeset_parse``, ``sss_changeset_summary``)
to SQLite's iterator: builders of headers and values, and the hand-made
edge cases both are checked on."""

from __future__ import annotations

import struct

from sqlite_session_safe.sessions.changeset import _varint as varint  # SQLite's varint encoding

__all__ = ["DELETE", "EDGE_CASES", "INSERT", "UPDATE", "header", "integer", "real", "text", "varint"]


def header(name: bytes, pk: bytes, kind: bytes = b"T") -> bytes:
    return kind + varint(len(pk)) + pk + name + b"\0"


def integer(v: int) -> bytes:
    return b"\x01" + struct.pack(">q", v)


def real(v: float) -> bytes:
    return b"\x02" + struct.pack(">d", v)


def text(v: bytes) -> bytes:
    return b"\x03" + varint(len(v)) + v


INSERT, UPDATE, DELETE = b"\x12", b"\x17", b"\x09"

#: Valid and refused inputs at the edges of the format.
EDGE_CASES = [
    b"",                                                        # nothing
    header(b"t", b"\x01"),                                      # a header with no changes
    header(b"t", b"\x01") + header(b"u", b"\x01\x00"),          # headers back to back
    header(b"", b"\x01") + INSERT + b"\0" + integer(1),         # an empty table name
    header(b"t", b"\x01\x00") + INSERT + b"\1" + integer(1) + real(float("nan")),   # NaN -> NULL
    header(b"t", b"\x01\x00") + INSERT + b"\0" + integer(1) + b"\x09",   # unknown type -> NULL
    header(b"t", b"\x01\x00") + INSERT + b"\0" + integer(1) + b"\x00",   # undefined in an INSERT
    header(b"t", b"\x01\x00") + INSERT + b"\0" + integer(1) + b"\x05",   # NULL
    header(b"t", b"\x01\x00") + INSERT + b"\7" + integer(1) + text(b"\xff"),  # not UTF-8
    header(b"t", b"\x01\x00") + UPDATE + b"\0" + integer(1) + text(b"old") + integer(1) + b"\x00",
    header(b"t", b"\x02\x01") + DELETE + b"\0" + integer(1) + text(b"k"),
    header(b"t", b"\x01\x00", b"P") + UPDATE + b"\0" + integer(1) + text(b"new"),
    header(b"t", b"\x01\x00", b"P") + UPDATE + b"\0" + b"\x00" + text(b"new"),  # key missing
    header(b"t", b"\x00\x01", b"P") + DELETE + b"\0" + integer(5),
    header(b"t", b"\x01", b"P") + INSERT + b"\0" + integer(5) + header(b"u", b"\x01") + DELETE
    + b"\0" + integer(6),                                      # a patchset then a changeset section
    # The same table under two headers in a row is one section; a different
    # key layout for the same name is another.
    header(b"t", b"\x01") + INSERT + b"\0" + integer(1) + header(b"t", b"\x01") + DELETE + b"\0"
    + integer(2) + header(b"t", b"\x00") + DELETE + b"\0" + integer(3),
    INSERT + b"\0" + integer(1),                                # a change before any header
    header(b"t", b"") + INSERT + b"\0",                         # zero columns
    b"T" + varint(65537) + b"\x01" * 65537 + b"t\0",            # too many columns
    b"T" + varint(3) + b"\x01\x00",                             # truncated header
    b"T" + varint(2) + b"\x01\x00" + b"t",                      # no nul terminator
    b"T\xff\xff",                                               # truncated varint
    header(b"t", b"\x01") + b"\x42\0" + integer(1),             # unknown operation
    header(b"t", b"\x01") + INSERT,                             # no indirect byte
    header(b"t", b"\x01") + INSERT + b"\0" + b"\x01\x00\x00",   # short integer
    header(b"t", b"\x01") + INSERT + b"\0" + b"\x03" + varint(10) + b"abc",  # short text
    header(b"t", b"\x01") + INSERT + b"\0" + b"\x04\xff\xff\xff\xff\xff\xff\xff\xff\xff",  # huge length
    header(b"t", b"\x01") + INSERT + b"\0",                     # record missing
]
