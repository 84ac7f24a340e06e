"""Drive the docker compose network of docker-compose.yml from tests.

Everything goes through the compose command line (``docker compose`` or
Debian's ``docker-compose`` 1.29) and ``docker`` itself, as a user would:
``exec -T NODE mvds ...`` to append and read, ``pause``/``stop``/``kill`` to
disrupt.  Each test session gets its own compose project (containers,
network, volumes, image tag), removed whole by :meth:`Network.down`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from mvds.testbed.netns import alive as pid_alive

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
NODES = ("a", "b", "c", "d")
LINKS = {("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")}
GROUP = "chat"
LOCAL_BASE_IMAGE = "mvds-base:bookworm"
"""What scripts/docker-base-image.sh builds; used when MVDS_BASE_IMAGE is unset."""


class ComposeUnavailable(Exception):
    """No Docker engine or no compose command: the one-line reason."""


def _run(argv: list[str], timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def find_compose() -> list[str]:
    """The compose command: $MVDS_COMPOSE, else ``docker compose`` (v2), else
    ``docker-compose`` (1.29); raises ComposeUnavailable with the reason."""
    if shutil.which("docker") is None:
        raise ComposeUnavailable("no docker command on PATH")
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        raise ComposeUnavailable("the Docker engine did not answer `docker info` within 30 s") from None
    if info.returncode != 0 or not info.stdout.strip():
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise ComposeUnavailable(f"no Docker engine: {reason}")
    override = os.environ.get("MVDS_COMPOSE")
    candidates = [shlex.split(override)] if override else [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) and _run([*command, "version"]).returncode == 0:
            return command
    raise ComposeUnavailable(
        f"no compose command ({' or '.join(' '.join(c) for c in candidates)}) works"
    )


_found: tuple[list[str] | None, str] | None = None


def find_compose_or_reason() -> tuple[list[str] | None, str]:
    """(compose command, "") or (None, why not); asked once per session."""
    global _found
    if _found is None:
        try:
            _found = (find_compose(), "")
        except ComposeUnavailable as exc:
            _found = (None, str(exc))
    return _found


def in_ci() -> bool:
    """CI=true (set by .ci/run): a missing engine fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def compose_version(command: list[str]) -> str:
    out = _run([*command, "version"]).stdout.strip().splitlines()
    return out[0] if out else "?"


def base_image() -> str:
    """$MVDS_BASE_IMAGE; else the registry-free local base if it was built; else
    the Dockerfile's default (python:3.12-slim, pulled from a registry)."""
    if os.environ.get("MVDS_BASE_IMAGE"):
        return os.environ["MVDS_BASE_IMAGE"]
    if _run(["docker", "image", "inspect", LOCAL_BASE_IMAGE]).returncode == 0:
        return LOCAL_BASE_IMAGE
    return "python:3.12-slim"


class ComposeError(AssertionError):
    pass


def reap_abandoned(command: list[str]) -> list[str]:
    """Take down the networks of test sessions that died without tearing
    down (killed outright): project mvdstest-PID-* whose PID is gone."""
    listed = _run(["docker", "ps", "--all", "--filter", "label=com.docker.compose.project",
                   "--format", '{{.Label "com.docker.compose.project"}}'])
    reaped = []
    for project in sorted(set(listed.stdout.split())):
        match = re.fullmatch(r"mvdstest-(\d+)-[0-9a-f]+", project)
        if match and not pid_alive(int(match.group(1))):
            _run([*command, "--project-name", project, "--file", str(COMPOSE_FILE), "down",
                  "--volumes", "--remove-orphans", "--rmi", "all", "--timeout", "1"],
                 timeout=180, cwd=ROOT, env={**os.environ, "MVDS_IMAGE": f"mvds-node:{project}"})
            reaped.append(project)
    return reaped


class Network:
    """One compose project of docker-compose.yml, plus a ledger of every
    append a node acknowledged (its message id), per node."""

    def __init__(self, command: list[str], workdir: Path) -> None:
        self.command = command
        self.project = f"mvdstest-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.image = f"mvds-node:{self.project}"
        self.base_image = base_image()
        self.workdir = workdir
        self.env = {
            **os.environ,
            "MVDS_BASE_IMAGE": self.base_image,
            "MVDS_IMAGE": self.image,
            "COMPOSE_PROJECT_NAME": self.project,
        }
        self.sent: dict[str, list[str]] = {node: [] for node in NODES}
        self._counters = {node: 0 for node in NODES}

    # -- plumbing -----------------------------------------------------------
    def compose(self, *args: str, input: str | None = None, timeout: float = 120,
                check: bool = True) -> subprocess.CompletedProcess:
        argv = [*self.command, "--project-name", self.project, "--file", str(COMPOSE_FILE), *args]
        try:
            result = subprocess.run(
                argv, input=input, capture_output=True, text=True, timeout=timeout,
                env=self.env, cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            raise ComposeError(f"`{' '.join(args)}` did not finish within {timeout} s") from None
        if check and result.returncode != 0:
            raise ComposeError(
                f"`{' '.join(args)}` exited {result.returncode}: "
                f"{result.stderr.strip()[-2000:] or result.stdout.strip()[-2000:]}"
            )
        return result

    def exec(self, node: str, *argv: str, input: str | None = None, timeout: float = 60) -> str:
        return self.compose("exec", "-T", node, *argv, input=input, timeout=timeout).stdout

    def container(self, node: str) -> str:
        # --all: v2 lists only running containers without it (v1 lists stopped ones too)
        cid = self.compose("ps", "--all", "-q", node).stdout.strip()
        if not cid:
            raise ComposeError(f"no container for {node}")
        return cid

    def inspect(self, node: str) -> dict[str, Any]:
        out = _run(["docker", "inspect", self.container(node)]).stdout
        return json.loads(out)[0]

    def address(self, node: str) -> str:
        networks = self.inspect(node)["NetworkSettings"]["Networks"]
        return next(iter(networks.values()))["IPAddress"]

    def squat(self) -> str:
        """Start a container on the network that takes the next free address
        (a stopped node's, typically), so the node comes back at a new one.
        Labelled as this project's, so `down --remove-orphans` removes it too."""
        network = f"{self.project}_mvds"
        result = _run(["docker", "run", "-d", "--network", network,
                       "--label", f"com.docker.compose.project={self.project}",
                       "--label", "com.docker.compose.service=squatter",
                       "--entrypoint", "sleep", self.image, "600"], timeout=60)
        if result.returncode != 0:
            raise ComposeError(f"docker run on {network}: {result.stderr.strip()}")
        return result.stdout.strip()

    def health(self, node: str) -> str:
        state = self.inspect(node)["State"]
        if state.get("Paused"):
            return "paused"
        if not state.get("Running"):
            return state.get("Status", "not running")
        return state.get("Health", {}).get("Status", "no healthcheck")

    # -- life cycle ---------------------------------------------------------
    def build_and_up(self) -> tuple[float, float]:
        """Build the image and start the network; (build, up-to-healthy) seconds."""
        log = self.workdir / "build.log"
        started = time.monotonic()
        result = self.compose("build", timeout=900, check=False)
        log.write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            hint = (
                "" if self.base_image != "python:3.12-slim" else
                " (no registry? scripts/docker-base-image.sh && scripts/docker-wheels.sh build a"
                " local base image and its wheels; then set MVDS_BASE_IMAGE=mvds-base:bookworm"
                " or put that line in .env)"
            )
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
            raise ComposeError(f"building the image on {self.base_image} failed{hint}:\n{tail}")
        built = time.monotonic()
        self.compose("up", "-d", timeout=300)
        self.wait_healthy(NODES)
        return built - started, time.monotonic() - built

    def wait_healthy(self, nodes: tuple[str, ...] | list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            states = {node: self.health(node) for node in nodes}
            if all(state == "healthy" for state in states.values()):
                return
            if time.monotonic() > deadline:
                raise ComposeError(f"not healthy after {timeout} s: {states}")
            time.sleep(1)

    def logs(self, tail: int = 40) -> str:
        result = self.compose("logs", "--no-color", "--tail", str(tail), check=False, timeout=60)
        return result.stdout + result.stderr

    def down(self) -> None:
        """Containers, network, volumes and this session's image: all gone."""
        self.compose("down", "--volumes", "--remove-orphans", "--rmi", "all", "--timeout", "5",
                     check=False, timeout=180)

    # -- the mvds command line, inside the nodes -------------------------------
    def send(self, node: str, count: int, label: str) -> list[str]:
        """Append ``count`` messages on ``node`` in one ``mvds send --lines``;
        record and return the acknowledged message ids."""
        texts = []
        for _ in range(count):
            self._counters[node] += 1
            texts.append(f"{label} {node} #{self._counters[node]}")
        out = self.exec(node, "mvds", "send", "/data", GROUP, "--lines", input="\n".join(texts) + "\n")
        ids = out.split()
        if len(ids) != count or any(len(i) != 64 for i in ids):
            raise ComposeError(f"mvds send on {node} printed {out!r} for {count} messages")
        self.sent[node].extend(ids)
        return ids

    def tail(self, node: str) -> list[dict[str, Any]]:
        out = self.exec(node, "mvds", "tail", "/data", "--json")
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def status(self, node: str) -> dict[str, Any]:
        return json.loads(self.exec(node, "mvds", "status", "/data", "--json"))

    def on_all(self, nodes: tuple[str, ...] | list[str], fn: Callable[[str], Any]) -> dict[str, Any]:
        with ThreadPoolExecutor(len(nodes)) as pool:
            return dict(zip(nodes, pool.map(fn, nodes)))

    # -- what must hold ---------------------------------------------------------
    def expected(self, node: str) -> set[str]:
        """Every acknowledged append of the other nodes (a node's own appends
        are stored but are not 'received', so `mvds tail` does not list them)."""
        return {i for other, ids in self.sent.items() if other != node for i in ids}

    def wait_delivered(self, nodes: tuple[str, ...] | list[str] = NODES, timeout: float = 120) -> dict:
        """Wait until each node's tail holds everything the others appended,
        then check that nothing is missing, extra or repeated."""
        deadline = time.monotonic() + timeout
        while True:
            tails = self.on_all(nodes, self.tail)
            missing = {n: len(self.expected(n) - {m["id"] for m in tails[n]}) for n in nodes}
            if not any(missing.values()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"messages still missing after {timeout} s: {missing}")
            time.sleep(2)  # each poll is four `compose exec`s: not too often on two cores
        for node in nodes:
            ids = [m["id"] for m in tails[node]]
            seqs = [m["seq"] for m in tails[node]]
            assert len(ids) == len(set(ids)), f"{node} received a message twice"
            assert set(ids) == self.expected(node), f"{node} received messages nobody sent"
            # Own appends share the one delivery sequence (tail shows received
            # ones): strictly increasing, never repeated, gaps where our own are.
            assert seqs == sorted(set(seqs)), f"{node}: seqs not increasing: {seqs}"
        return tails

    def assert_stored_everything(self, nodes: tuple[str, ...] | list[str] = NODES) -> None:
        """Each node's store holds every message once: its own and the others'."""
        total = sum(len(ids) for ids in self.sent.values())
        statuses = self.on_all(nodes, self.status)
        stored = {node: statuses[node]["messages_stored"] for node in nodes}
        assert stored == {node: total for node in nodes}, f"stored {stored}, appended {total}"
