"""Two real `mvds run` daemons on loopback for the end-to-end benchmarks.

Encryption on, SQLite persistence on (durability "crash"), 256-byte bodies:
the configuration a deployment runs.  Appends go through A's control API
(append_many), deliveries are observed through B's (subscribe), so every
number includes the whole path a real application sees.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlClient, ControlError
from mvds.daemon.setup import init_node_dir

GROUP = "bench"


class BenchDaemon:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.path / "daemon.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mvds", "run", str(self.path), "--log-format", "json",
             "--log-level", "warning"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                with self.client() as client:
                    client.request("ping")
                return
            except ControlError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not start: see {self.path / 'daemon.log'}")
                time.sleep(0.05)

    def client(self, timeout: float | None = 60.0) -> ControlClient:
        return ControlClient(self.path / "mvds.sock", timeout=timeout)

    def status(self) -> dict:
        with self.client() as client:
            return client.request("status")["status"]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def two_daemons(
    shares: dict[str, list[str]] | None = None, prefix: str = "mvds-bench-", **settings
) -> Iterator[tuple[BenchDaemon, BenchDaemon]]:
    """Daemons A and B sharing GROUP; ``settings`` apply to both configs;
    ``shares`` ("a"/"b" -> groups) overrides what a node shares with the other."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    daemons: list[BenchDaemon] = []
    try:
        ids = {}
        for name in "ab":
            _, identity = init_node_dir(base / name)
            ids[name] = identity.peer_id_hex
        listens = {n: load_config(base / n / "mvds.toml").listen for n in "ab"}
        for name in "ab":
            other = "b" if name == "a" else "a"
            config = load_config(base / name / "mvds.toml")
            for key, value in settings.items():
                setattr(config, key, value)
            config.seed = ord(name) if settings.get("loss") else None
            shared = [GROUP] if shares is None else shares[name]
            config.peers = [PeerConfig(other, ids[other], listens[other], shared)]
            save_config(base / name / "mvds.toml", config)
        daemons = [BenchDaemon(base / n) for n in "ab"]
        for daemon in daemons:
            daemon.start()
        yield daemons[0], daemons[1]
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(base, ignore_errors=True)


def body(index: int, size: int = 256) -> str:
    """A distinct ASCII body of ``size`` bytes."""
    head = f"{index:012d}"
    return head + "x" * (size - len(head))


class Subscriber:
    """Counts deliveries on a node, recording each one's arrival time.

    A thread of its own reads B's subscribe stream, as a real reader would
    (an application's producer and consumer do not wait on each other), so
    an arrival is timed when B hands the message over, not when the
    benchmark has finished waiting for A's append reply.
    """

    def __init__(self, daemon: BenchDaemon) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(daemon.path / "mvds.sock"))
        self.sock.sendall(b'{"op":"subscribe","since":0,"follow":true}\n')
        self.file = self.sock.makefile("rb")
        head = json.loads(self.file.readline())
        assert head.get("ok"), head
        self.arrivals: dict[str, float] = {}
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._target = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self.file:
                now = time.perf_counter()
                event = json.loads(line)
                if event.get("event") == "message":
                    with self._changed:
                        self.arrivals.setdefault(event["message"]["id"], now)
                        # Wake the waiter only when it has what it waits for:
                        # a wake-up per message would cost the appender (in
                        # the same process) the CPU it measures.
                        if len(self.arrivals) >= self._target:
                            self._changed.notify_all()
        except (OSError, ValueError) as exc:
            self.error = exc
        with self._changed:
            self._changed.notify_all()  # the stream ended

    def wait_for(self, count: int, timeout: float) -> None:
        with self._changed:
            self._target = count
            if not self._changed.wait_for(
                lambda: len(self.arrivals) >= count or not self._thread.is_alive(), timeout
            ):
                raise TimeoutError(f"only {len(self.arrivals)}/{count} messages arrived")
            if len(self.arrivals) < count:
                raise RuntimeError(f"the daemon closed the subscription ({self.error})")

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(timeout=5)
        self.file.close()
