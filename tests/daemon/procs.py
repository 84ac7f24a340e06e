"""Real `mvds` processes for tests: the CLI, daemons, and small networks of them."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable

from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlClient, ControlError
from mvds.daemon.setup import init_node_dir

MVDS = [sys.executable, "-m", "mvds"]


def cli(*args: str, input: str | bytes | None = None, timeout: float = 60, check: bool = False):
    """Run `mvds ARGS...`; returns the CompletedProcess (text unless input is bytes)."""
    text = not isinstance(input, bytes)
    result = subprocess.run(
        [*MVDS, *args], input=input, capture_output=True, text=text, timeout=timeout
    )
    if check and result.returncode != 0:
        raise AssertionError(f"mvds {' '.join(args)} failed: {result.stderr}")
    return result


class Daemon:
    """`mvds run DIR` as a child process, logging JSON to DIR/daemon.log."""

    started: list["Daemon"] = []
    """Every daemon started since the test module began (conftest stops and
    reports any still running when the module ends: a leaked daemon)."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.path = path
        self.extra = list(extra)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 20.0) -> "Daemon":
        log = open(self.path / "daemon.log", "ab")
        self.process = subprocess.Popen(
            [*MVDS, "run", str(self.path), "--log-format", "json", *self.extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        Daemon.started.append(self)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with self.client(timeout=5) as client:
                    client.request("ping")
                return self
            except ControlError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"daemon did not start: {self.log_tail()}")
            time.sleep(0.05)

    def client(self, timeout: float | None = 30.0) -> ControlClient:
        return ControlClient(self.path / "mvds.sock", timeout=timeout)

    def request(self, op: str, **fields):
        with self.client() as client:
            return client.request(op, **fields)

    def status(self) -> dict:
        return self.request("status")["status"]

    status_now = status  # the name an in-process Node uses for the same snapshot

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"daemon ignored {signal.Signals(sig).name}")
        return self.process.returncode

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 5) -> str:
        try:
            return "\n".join((self.path / "daemon.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def make_network(
    base: Path,
    names: Iterable[str],
    links: Iterable[tuple[str, str]],
    group: str = "chat",
    settings: dict[str, dict] | None = None,
) -> dict[str, Path]:
    """Node directories wired along ``links``, sharing ``group`` both ways."""
    names = list(names)
    paths = {}
    ids = {}
    for name in names:
        path = base / name
        _, identity = init_node_dir(path)
        paths[name] = path
        ids[name] = identity.peer_id_hex
    listens = {name: load_config(paths[name] / "mvds.toml").listen for name in names}
    for name in names:
        config = load_config(paths[name] / "mvds.toml")
        for key, value in (settings or {}).get(name, {}).items():
            setattr(config, key, value)
        config.groups = [group]
        for a, b in links:
            if name in (a, b):
                other = b if name == a else a
                config.peers.append(PeerConfig(other, ids[other], listens[other], [group]))
        save_config(paths[name] / "mvds.toml", config)
    return paths


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def stop_all(daemons: Iterable[Daemon]) -> None:
    for daemon in daemons:
        if daemon.alive:
            try:
                daemon.stop()
            except AssertionError:
                pass

