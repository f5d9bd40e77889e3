"""Processes for the stream replication tests: ``python _nats_workers.py
publish SOURCE URL`` follows a source into a stream, ``follow URL REPLICA``
follows a stream into a replica, until killed.  Separate programs, as on
separate machines."""

from __future__ import annotations

import sys

import sqlite_session_safe as sss

if __name__ == "__main__":
    what, a, b = sys.argv[1:4]
    if what == "publish":
        with sss.open(a) as db:
            sss.follow(db, b, interval=0.01)
    elif what == "follow":
        with sss.open(b) as db:
            sss.follow(a, db, interval=0.05, batch=8)
    elif what == "replicate":
        print(sss.replicate(a, b), flush=True)
    else:
        raise SystemExit(f"unknown command {what!r}")
