"""A real nats-server with JetStream for the stream replication tests.

CI (.ci/run) starts one and passes its URL as ``SSS_NATS_URL``; tests that
kill or restart a server start their own (:class:`NatsServer`).  Without the
``nats-server`` binary or the ``nats-py`` client the tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def require_nats() -> str:
    """The nats-server binary; skips the test when it or nats-py is missing."""
    pytest.importorskip("nats", reason="nats-py is not installed (pip install '.[nats]')")
    binary = shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                              if os.path.exists("/usr/sbin/nats-server") else None)
    if binary is None:
        pytest.skip("nats-server is not installed (Debian: apt-get install nats-server; .ci/run does)")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    """``nats-server -js`` on a free loopback port with a temporary store."""

    def __init__(self, binary: str, max_payload: int | None = None) -> None:
        self.binary = binary
        self.port = free_port()
        self.store = tempfile.mkdtemp(prefix="sss-nats-")
        self.max_payload = max_payload
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store]
        if self.max_payload:
            conf = os.path.join(self.store, "server.conf")
            with open(conf, "w") as f:
                f.write(f"max_payload: {self.max_payload}\n")
            args += ["-c", conf]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nats-server exited with {self.proc.returncode}") from None
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.store, ignore_errors=True)


def admin(url: str, coro_fn):
    """Run ``coro_fn(js)`` with a nats-py JetStream context of its own."""
    import asyncio

    import nats

    async def main():
        nc = await nats.connect(url)
        try:
            return await coro_fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(main())
