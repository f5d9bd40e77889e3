"""Optimistic writes: compute outside the lock, re-check under it.

Optimistic concurrency as an explicit, opt-in API (nothing is promised
implicitly): read a baseline without the write lock, compute the
change outside it (however long that takes), then take the lock and re-check
the preconditions the computation declared; if they still hold, apply the
write in a short transaction, else roll back, back off and start over.  The
final commit is still one admitted writer at a time: this shortens the time
the lock is held, it does not make two writers commit at once.

Preconditions are declared by reading through ``ctx.expect(sql, params)``:
the rows it returns are what the computation relied on, and under the lock
the same query must return the same rows.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..binding.cursor import Row
from ..binding.errors import BusyError, InterfaceError
from ..binding.values import Parameters
from .db_errors import ConflictError
from .write import WriteResult, WriteTx

if TYPE_CHECKING:
    from .database import Database

__all__ = ["OptimisticContext", "run_optimistic"]


class _Conflict(Exception):
    """A declared precondition no longer holds (internal: triggers a retry)."""


class OptimisticContext:
    """What ``compute(ctx)`` of :meth:`Database.optimistic_write` reads with.

    Each read is its own short snapshot, so ``compute`` holds no lock of any
    kind while it works (in rollback-journal mode a read held open would
    delay every writer's COMMIT).  Several ``expect`` reads may therefore
    see different states; that is safe because under the lock all of them
    must still return what they returned, which means the inputs ``compute``
    used are those of one state: the current one.

    Attributes:
        attempt: 1 for the first try, 2 for the first retry, ...
    """

    def __init__(self, db: Database, attempt: int) -> None:
        self._db = db
        self.attempt = attempt
        self._expected: list[tuple[str, Parameters | None, list[Row]]] = []

    def _read(self, sql: str, params: Parameters | None) -> list[Row]:
        with self._db.read() as r:
            return r.execute(sql, params).fetchall()

    def expect(self, sql: str, params: Parameters | None = None) -> list[Row]:
        """Read rows and declare them a precondition: the write applies only
        if, under the lock, this query still returns exactly these rows."""
        rows = self._read(sql, params)
        self._expected.append((sql, params, rows))
        return rows

    def execute(self, sql: str, params: Parameters | None = None) -> list[Row]:
        """Read rows without making them a precondition."""
        return self._read(sql, params)

    def sss_recheck(self, tx: WriteTx) -> None:
        """For :func:`optimistic_write` (the package's own, not the
        reference): raise the conflict if a query read through this context
        returns other rows inside the write ``tx``."""
        for sql, params, rows in self._expected:
            now = tx.execute(sql, params).fetchall()
            if now != rows:
                shown = now if len(now) <= 3 else f"{now[:3]}... ({len(now)} rows)"
                was = rows if len(rows) <= 3 else f"{rows[:3]}... ({len(rows)} rows)"
                raise _Conflict(f"{sql!r} {params!r} now returns {shown}, the baseline had {was}")


def run_optimistic(
    db: Database,
    compute: Callable[[OptimisticContext], Callable[[WriteTx], Any]],
    label: str | None,
    attempts: int,
    backoff: float,
    max_backoff: float,
) -> WriteResult:
    """The loop behind :meth:`Database.optimistic_write`."""
    if not callable(compute):
        raise InterfaceError(f"compute must be callable, not {type(compute).__qualname__}")
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise InterfaceError(f"attempts must be an int >= 1, not {attempts!r}")
    for name, value in (("backoff", backoff), ("max_backoff", max_backoff)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InterfaceError(f"{name} must be seconds >= 0, not {value!r}")
    reason = ""
    for attempt in range(1, attempts + 1):
        ctx = OptimisticContext(db, attempt)
        apply = compute(ctx)
        if not callable(apply):
            raise InterfaceError(
                f"compute must return the write to make, a callable apply(tx); got {type(apply).__qualname__}"
            )

        def fn(tx: WriteTx, ctx: OptimisticContext = ctx, apply: Callable[[WriteTx], Any] = apply) -> Any:
            ctx.sss_recheck(tx)
            return apply(tx)

        try:
            result: WriteResult = db.write(fn, label=label)
        except _Conflict as e:
            reason = str(e)
        except BusyError as e:
            # A raw (non-protocol) reader held SQLite's lock past the busy
            # timeout: the write is recomputed and retried like a conflict.
            reason = f"SQLite was busy: {e}"
        else:
            return replace(result, attempts=attempt)
        if attempt < attempts:
            pause = min(max_backoff, backoff * (2 ** (attempt - 1)))
            time.sleep(pause * random.uniform(0.5, 1.0))
    raise ConflictError(
        f"optimistic write{f' {label!r}' if label else ''} gave up after {attempts} attempt(s): "
        f"its preconditions kept changing; last: {reason}",
        attempts,
        reason,
    )
