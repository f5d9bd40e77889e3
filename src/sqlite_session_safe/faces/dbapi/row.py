"""``Row``: the stdlib's row factory -- access by index, by case-insensitive
column name, or by slice; ``keys()``; equality and hashing."""

from __future__ import annotations

import collections.abc
from collections.abc import Iterator
from typing import Any

from .cursor import Cursor

__all__ = ["Row"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class Row:
    """A result row that also answers to column names (``row["name"]``).

    Use as ``con.row_factory = Row`` (or on one cursor).
    """

    __slots__ = ("_description", "_data")

    def __init__(self, cursor: Any, data: tuple[Any, ...], /) -> None:
        if not issubclass(type(cursor), Cursor):  # the real type: __class__ can lie
            raise TypeError(f"Row() argument 1 must be sqlite3.Cursor, not {type(cursor).__name__}")
        if not issubclass(type(data), tuple):
            raise TypeError(f"Row() argument 2 must be tuple, not {type(data).__name__}")
        self._description = cursor.description or ()
        self._data = data

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            # Case-insensitive for ASCII letters only, as the stdlib compares.
            folded = key.translate(_ASCII_LOWER)
            for i, column in enumerate(self._description):
                if column[0].translate(_ASCII_LOWER) == folded:
                    return self._data[i]
            raise IndexError("No item with that key")
        if isinstance(key, (int, slice)):
            return self._data[key]
        raise IndexError("Index must be int or string")

    def keys(self) -> list[str]:
        """The column names, in order."""
        return [column[0] for column in self._description]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._description == other._description and self._data == other._data

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self._description) ^ hash(self._data)

    def __repr__(self) -> str:
        # the stdlib's text: code and doctests compare it
        return f"<sqlite3.Row object at {id(self):#x}>"


collections.abc.Sequence.register(Row)
