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
def two_daemons(**settings) -> Iterator[tuple[BenchDaemon, BenchDaemon]]:
    """Daemons A and B sharing GROUP; ``settings`` apply to both configs."""
    base = Path(tempfile.mkdtemp(prefix="mvds-bench-"))
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
            config.peers = [PeerConfig(other, ids[other], listens[other], [GROUP])]
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
    """Counts deliveries on a node, recording each one's arrival time."""

    def __init__(self, daemon: BenchDaemon) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(daemon.path / "mvds.sock"))
        self.sock.sendall(b'{"op":"subscribe","since":0,"follow":true}\n')
        self.file = self.sock.makefile("rb")
        head = json.loads(self.file.readline())
        assert head.get("ok"), head
        self.arrivals: dict[str, float] = {}

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while len(self.arrivals) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.arrivals)}/{count} messages arrived")
            line = self.file.readline()
            if not line:
                raise RuntimeError("the daemon closed the subscription")
            now = time.perf_counter()
            event = json.loads(line)
            if event.get("event") == "message":
                self.arrivals.setdefault(event["message"]["id"], now)

    def close(self) -> None:
        self.file.close()
        self.sock.close()
