"""``mvds testbed run SCENARIO --compose``: the scenario as a docker compose project.

The same run as :mod:`mvds.testbed.runner` (same plan, ledger, sampling
and verdict: this is a subclass that swaps how nodes start, stop and fail),
with every daemon in its own container of the image the repository's
Dockerfile builds:

- **services generated per node** (:func:`project`), so any N works; the
  container runs the image's entrypoint (docker/mvds-node), which creates
  the node's identity in the node's own volume on first start, publishes
  its peer id in a volume the nodes share and trusts its neighbours' ids,
  exactly as the shipped docker-compose.yml network does;
- **one network per link** (a /29 with fixed addresses: the two ends only),
  so cutting one link is ``docker network disconnect`` of that network and
  healing it ``docker network connect`` with the same addresses: a real cut
  that touches no other link (one network for all would cut a whole node);
  ``internal`` networks: nothing leaves for the outside world;
- per-link latency, jitter, loss, duplication, reordering and rate through
  the daemon's own link emulation (the config key ``links``,
  :mod:`mvds.daemon.netem`), from the same links files as local mode;
- kill is ``docker kill -s KILL`` and restart ``docker start`` (the
  entrypoint runs again, idempotently); pause is ``compose pause`` (the
  cgroup freezer: like SIGSTOP, the kernel keeps queueing UDP for it);
- move is ``docker stop``, then on each of the node's link networks
  ``docker network disconnect`` and ``connect --ip`` with an address of
  that link's /29 neither end uses (:func:`free_address`; a cut link gets
  it at its heal), ``docker start``, and each neighbour told the node's new
  address on their link through its control API (``add_peer``), as local
  mode does; a neighbour restarted later is told again (its entrypoint
  re-adds the addresses the project was generated with);
- each node's volume is a bind mount of ``OUT/nodes/NAME``: the runner
  drives the control API of the daemon inside the container through its
  socket there (``/data/mvds.sock``), writes its links file there and the
  store stays there for inspection after the project is gone.

More than one group is refused with one line: the entrypoint shares one
group over every link.  The project is
taken down whole (``down -v``, networks removed) however the run ends.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import trio

from mvds.daemon.async_client import AsyncControlClient
from mvds.testbed.runner import CONTROL_ERRORS, Testbed, TestbedError, TNode
from mvds.testbed.scenario import Fault, Scenario

PORT = 7400
IMAGE_UID = 10001
"""The image's ``mvds`` user (Dockerfile): owns the bind-mounted volumes."""
DEFAULT_IMAGE = "mvds-node:testbed"
LOCAL_BASE_IMAGE = "mvds-base:bookworm"
"""What scripts/docker-base-image.sh builds (no registry needed)."""
SOURCE = Path(__file__).resolve().parents[2]
"""The checkout holding the Dockerfile (an editable install or a source tree)."""


def find_compose() -> list[str]:
    """``$MVDS_COMPOSE``, else ``docker compose`` (v2), else ``docker-compose``
    (1.29); a TestbedError with the reason when there is no engine or none works."""
    if shutil.which("docker") is None:
        raise TestbedError("--compose needs docker: no docker command on PATH")
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise TestbedError("--compose: the Docker engine did not answer `docker info` within 30 s") from None
    if info.returncode != 0 or not info.stdout.strip():
        reason = (info.stderr.strip().splitlines() or ["no answer"])[-1]
        raise TestbedError(f"--compose needs a Docker engine: {reason}")
    override = os.environ.get("MVDS_COMPOSE")
    candidates = [shlex.split(override)] if override else [["docker", "compose"], ["docker-compose"]]
    for command in candidates:
        if shutil.which(command[0]) and subprocess.run(
                [*command, "version"], capture_output=True, timeout=30).returncode == 0:
            return command
    raise TestbedError("--compose: no compose command works ("
                       + " or ".join(" ".join(c) for c in candidates) + ")")


def base_image() -> str:
    """$MVDS_BASE_IMAGE; else the registry-free local base if built; else the
    Dockerfile's default (python:3.12-slim, from a registry)."""
    if os.environ.get("MVDS_BASE_IMAGE"):
        return os.environ["MVDS_BASE_IMAGE"]
    found = subprocess.run(["docker", "image", "inspect", LOCAL_BASE_IMAGE], capture_output=True)
    return LOCAL_BASE_IMAGE if found.returncode == 0 else "python:3.12-slim"


def used_subnets() -> list[ipaddress.IPv4Network]:
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True,
                         timeout=30).stdout.split()
    if not ids:
        return []
    out = subprocess.run(["docker", "network", "inspect", "--format",
                          "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
                         capture_output=True, text=True, timeout=30).stdout.split()
    nets = []
    for text in out:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            nets.append(net)
    return nets


def pick_block(used: list[ipaddress.IPv4Network], start: int = 0) -> ipaddress.IPv4Network:
    """A 10.X.0.0/16 (X in 200..254) that overlaps no Docker network: room for
    8,192 links of a /29 each."""
    for step in range(55):
        block = ipaddress.IPv4Network(f"10.{200 + (start + step) % 55}.0.0/16")
        if not any(block.overlaps(net) for net in used):
            return block
    raise TestbedError("--compose: no free 10.200-254.0.0/16 for the link networks")


def link_addresses(block: ipaddress.IPv4Network, index: int) -> tuple[str, str, str]:
    """Link ``index``'s subnet (a /29: gateway .1) and the addresses of its two ends."""
    if index >= block.num_addresses // 8:
        raise TestbedError(f"--compose: more than {block.num_addresses // 8} links")
    base = block.network_address + 8 * index
    return f"{base}/29", str(base + 2), str(base + 3)


def free_address(subnet: str, in_use: set[str]) -> str:
    """The lowest address of a link's /29 after its gateway that neither end
    uses: where a moved end goes (five usable, two in use: never none)."""
    hosts = list(ipaddress.IPv4Network(subnet).hosts())[1:]
    return next(str(h) for h in hosts if str(h) not in in_use)


def project(scenario: Scenario, name: str, image: str, out: Path, block: ipaddress.IPv4Network, *,
            build: dict[str, Any] | None, user: str | None) -> dict[str, Any]:
    """The compose project (a dict; JSON is YAML, so it is written as is)."""
    networks: dict[str, Any] = {}
    attach: dict[str, dict[str, Any]] = {n: {} for n in scenario.names}
    reach: dict[str, list[str]] = {n: [] for n in scenario.names}
    for index, link in enumerate(scenario.links):
        subnet, ip_a, ip_b = link_addresses(block, index)
        key = f"l{index}"
        networks[key] = {"name": f"{name}-{key}", "internal": True, "driver": "bridge",
                         "ipam": {"config": [{"subnet": subnet}]}}
        attach[link.a][key] = {"ipv4_address": ip_a}
        attach[link.b][key] = {"ipv4_address": ip_b}
        reach[link.a].append(f"{link.b}@{ip_b}")
        reach[link.b].append(f"{link.a}@{ip_a}")
    group = scenario.groups[0].name
    services: dict[str, Any] = {}
    for index, spec in enumerate(scenario.nodes):
        env = {
            "MVDS_NODE": spec.name, "MVDS_LINKS": " ".join(reach[spec.name]), "MVDS_GROUP": group,
            "MVDS_PORT": str(PORT), "MVDS_MODE": spec.mode, "MVDS_DELIVERY": spec.delivery,
            "MVDS_EPOCH_MS": str(scenario.epoch_ms), "MVDS_SEED": str(scenario.seed * 1000 + index),
            "MVDS_LINKS_FILE": "/data/links.toml", "MVDS_LOG_FORMAT": "json",
        }
        if spec.loss:
            env["MVDS_LOSS"] = repr(spec.loss)
        if spec.schedule:
            env["MVDS_SCHEDULE"] = spec.schedule
        service: dict[str, Any] = {
            "image": image,
            "container_name": f"{name}-{spec.name}",
            "hostname": spec.name,
            "environment": env,
            "volumes": [f"{(out / 'nodes' / spec.name).resolve()}:/data",
                        f"{(out / 'peers').resolve()}:/peers"],
            "stop_grace_period": "2s",
            "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
        }
        if user:
            service["user"] = user
        if attach[spec.name]:
            service["networks"] = attach[spec.name]
        else:
            service["network_mode"] = "none"
        if index == 0 and build is not None:
            service["build"] = build
        elif build is not None:
            service["pull_policy"] = "never"
        services[spec.name] = service
    return {"services": services, "networks": networks}


class ComposeTestbed(Testbed):
    """A scenario as a docker compose project (see the module docstring)."""

    def __init__(self, scenario: Scenario, out: Path, *, progress: Callable[[str], None] | None = None,
                 image: str | None = None) -> None:
        super().__init__(scenario, out, progress=progress)
        self.prebuilt = image
        self.image = image or os.environ.get("MVDS_IMAGE") or DEFAULT_IMAGE
        self.name = f"mvdstb-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.command: list[str] = []
        self.file = out / "compose.yml"
        self.links: dict[tuple[str, str], tuple[str, str, str]] = {}
        """Sorted pair -> (network, address of the first, of the second)."""
        self.subnets: dict[tuple[str, str], str] = {}
        self.moved: set[str] = set()
        """Nodes whose addresses are no longer the generated ones."""
        self.up = False

    # -- setup -----------------------------------------------------------------
    def check(self) -> None:
        s = self.scenario
        if len(s.groups) != 1 or set(s.groups[0].members) != set(s.names):
            raise TestbedError("--compose: one group shared by every node only "
                               "(the container entrypoint shares one group over every link)")

    def prepare(self) -> None:
        self.check()
        self.command = find_compose()
        s = self.scenario
        nodes_dir = self.out / "nodes"
        if nodes_dir.exists() and any(nodes_dir.iterdir()):
            raise TestbedError(f"{nodes_dir} already holds nodes: use a fresh --out directory")
        root = os.geteuid() == 0
        for path in [self.out / "peers", *(nodes_dir / n for n in s.names)]:
            path.mkdir(parents=True, exist_ok=True)
            if root:  # the image's user writes the volumes; root (the runner) reads anything
                os.chown(path, IMAGE_UID, IMAGE_UID)
        for name in s.names:
            self.nodes[name] = TNode(name, nodes_dir / name, PORT)
            self.write_links(self.nodes[name])
        block = pick_block(used_subnets(), os.getpid())
        for index, link in enumerate(s.links):
            subnet, ip_a, ip_b = link_addresses(block, index)
            self.subnets[tuple(sorted((link.a, link.b)))] = subnet
            self.links[tuple(sorted((link.a, link.b)))] = (f"{self.name}-l{index}", ip_a, ip_b) \
                if link.a < link.b else (f"{self.name}-l{index}", ip_b, ip_a)
        build = None
        if self.prebuilt is None:
            if not (SOURCE / "Dockerfile").is_file():
                raise TestbedError(f"--compose: no Dockerfile in {SOURCE} (mvds installed from a "
                                   "wheel?): build the image from a checkout and pass --image")
            build = {"context": str(SOURCE), "args": {"BASE_IMAGE": base_image()}}
        user = None if root else f"{os.getuid()}:{os.getgid()}"
        spec = project(s, self.name, self.image, self.out, block, build=build, user=user)
        self.file.write_text(json.dumps(spec, indent=2) + "\n")

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        argv = [*self.command, "--project-name", self.name, "--file", str(self.file), *args]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                    cwd=self.out, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise TestbedError(f"compose {' '.join(args)} did not finish within {timeout:g} s") from None
        if check and result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-3:]
            raise TestbedError(f"compose {' '.join(args)} exited {result.returncode}: " + " / ".join(tail))
        return result

    async def docker(self, *args: str, timeout: float = 60) -> None:
        def call() -> subprocess.CompletedProcess:
            return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)

        result = await trio.to_thread.run_sync(call)
        if result.returncode != 0:
            raise TestbedError(f"docker {' '.join(args)}: {result.stderr.strip()}")

    def container(self, node: str) -> str:
        return f"{self.name}-{node}"

    # -- life cycle --------------------------------------------------------------
    async def start_nodes(self) -> None:
        if self.prebuilt is None:
            built = await trio.to_thread.run_sync(
                lambda: self.compose("build", self.scenario.names[0], timeout=900, check=False))
            if built.returncode != 0:
                base = base_image()
                hint = ("" if base != "python:3.12-slim" else
                        " (no registry? scripts/docker-base-image.sh && scripts/docker-wheels.sh build "
                        "a local base image and its wheels; then set MVDS_BASE_IMAGE=mvds-base:bookworm)")
                tail = (built.stderr.strip() or built.stdout.strip()).splitlines()[-3:]
                raise TestbedError(f"building {self.image} on {base} failed{hint}: " + " / ".join(tail))
        self.up = True  # from here on, whatever happens, the project is taken down
        await trio.to_thread.run_sync(lambda: self.compose("up", "-d", "--no-build", timeout=600))
        for node in self.nodes.values():
            node.state = "starting"
        for node in self.nodes.values():
            await self.wait_ready(node)

    START_POLL = 0.2
    START_CHECK_EVERY = 3.0
    """A `docker inspect` takes a while: Testbed.wait_ready asks it every 3 s."""

    async def start_failure(self, node: TNode) -> str | None:
        """A container that is not running (exited, restarting, missing) will not answer."""
        state = await trio.to_thread.run_sync(self.container_state, node.name)
        if state not in ("running", "paused"):
            return f"node {node.name}'s container is {state}: {self.log_tail(node.name)}"
        return None

    def start_timeout_message(self, node: TNode) -> str:
        return f"{super().start_timeout_message(node)}: {self.log_tail(node.name)}"

    def container_state(self, node: str) -> str:
        result = subprocess.run(["docker", "inspect", "--format", "{{.State.Status}}", self.container(node)],
                                capture_output=True, text=True, timeout=30)
        return result.stdout.strip() or "missing"

    def log_tail(self, node: str) -> str:
        result = subprocess.run(["docker", "logs", "--tail", "1", self.container(node)],
                                capture_output=True, text=True, timeout=30)
        lines = (result.stdout + result.stderr).strip().splitlines()
        return lines[-1] if lines else "no output"

    def stop_all(self) -> None:
        """Logs saved to nodes/NAME/daemon.log, then the project taken down whole:
        containers, networks, volumes (the nodes' directories stay in --out)."""
        if not self.up:
            return
        self.up = False
        for node in self.nodes.values():
            try:
                logs = subprocess.run(["docker", "logs", self.container(node.name)],
                                      capture_output=True, timeout=60)
                (node.path / "daemon.log").write_bytes(logs.stdout + logs.stderr)
            except (OSError, subprocess.TimeoutExpired):
                pass
        paused = [n.name for n in self.nodes.values() if n.state == "paused"]
        try:
            if paused:
                self.compose("unpause", *paused, check=False)
            self.compose("down", "--volumes", "--remove-orphans", "--timeout", "2", timeout=300,
                         check=False)
        except TestbedError:
            pass
        # Whatever down left (a container it could not stop, a network in use):
        # removed by name, so nothing of the project outlives the run.
        subprocess.run(["docker", "rm", "-f", "-v", *(self.container(n) for n in self.nodes)],
                       capture_output=True, timeout=120)
        networks = [net for net, _, _ in self.links.values()]
        if networks:
            subprocess.run(["docker", "network", "rm", *networks], capture_output=True, timeout=120)

    # -- faults ------------------------------------------------------------------
    async def apply(self, fault: Fault) -> None:
        if fault.action in ("partition", "heal"):
            for a, b in fault.links:
                pair = tuple(sorted((a, b)))
                network, ip_first, ip_second = self.links[pair]
                for node, ip in ((pair[0], ip_first), (pair[1], ip_second)):
                    if fault.action == "partition":
                        await self.docker("network", "disconnect", "--force", network, self.container(node))
                        self.nodes[node].cut.add(b if node == a else a)
                    else:
                        await self.docker("network", "connect", "--ip", ip, network, self.container(node))
                        self.nodes[node].cut.discard(b if node == a else a)
            return
        node = self.nodes[fault.node]
        if fault.action == "kill":
            await self.docker("kill", "--signal", "KILL", self.container(node.name))
            self.retire(node, "killed")
        elif fault.action == "restart":
            await self.docker("start", self.container(node.name), timeout=120)
            await self.wait_ready(node)
            await self.refresh(node)
            assert self.nursery is not None
            self.follow(self.nursery, node)
        elif fault.action == "move":
            await self.move(node)
        elif fault.action == "pause":
            await trio.to_thread.run_sync(lambda: self.compose("pause", node.name))
            node.state = "paused"
        elif fault.action == "resume":
            await trio.to_thread.run_sync(lambda: self.compose("unpause", node.name))
            node.state = "running"
        else:  # refused in check()
            raise TestbedError(f"--compose: fault {fault.action!r} is not supported")

    def link_address(self, node: str, peer: str) -> str:
        """``node``'s address on its link with ``peer``."""
        pair = tuple(sorted((node, peer)))
        _, first, second = self.links[pair]
        return first if pair[0] == node else second

    async def move(self, node: TNode) -> None:
        """Stopped, a new address on each of its link networks, started, and
        its neighbours told (see the module docstring)."""
        container = self.container(node.name)
        await self.docker("stop", "--time", "2", container, timeout=60)
        self.retire(node, "moving")
        for pair, (network, first, second) in list(self.links.items()):
            if node.name not in pair:
                continue
            new = free_address(self.subnets[pair], {first, second})
            self.links[pair] = (network, new, second) if pair[0] == node.name else (network, first, new)
            other = pair[1] if pair[0] == node.name else pair[0]
            if other in node.cut:
                continue  # disconnected: the heal connects it with the new address
            await self.docker("network", "disconnect", "--force", network, container)
            await self.docker("network", "connect", "--ip", new, network, container)
        await self.docker("start", container, timeout=120)
        await self.wait_ready(node)
        await self.refresh(node)
        self.moved.add(node.name)
        for peer in self.scenario.neighbours(node.name):
            if self.nodes[peer].state == "running":
                await self.tell(self.nodes[peer], node)
        assert self.nursery is not None
        self.follow(self.nursery, node)

    async def refresh(self, node: TNode) -> None:
        """After a start: its entrypoint re-added the generated addresses of
        its neighbours; those that moved since are told again."""
        for peer in self.scenario.neighbours(node.name):
            if peer in self.moved:
                await self.tell(node, self.nodes[peer])

    async def tell(self, node: TNode, about: TNode) -> None:
        """Give ``node``'s daemon ``about``'s current address on their link."""
        peer_id = (self.out / "peers" / about.name).read_text().strip()
        groups = self.scenario.shares(node.name).get(about.name, [])
        try:
            async with await AsyncControlClient.connect(node.socket) as client:
                await client.request("add_peer", name=about.name, peer_id=peer_id,
                                     address=f"{self.link_address(about.name, node.name)}:{PORT}",
                                     groups=groups)
        except CONTROL_ERRORS:
            pass  # down: told when it restarts

    def write_report(self, verdict: dict[str, Any], counters: dict[str, dict[str, int]]) -> None:
        verdict["mode"] = f"compose ({' '.join(self.command)}, image {self.image})"
        self.extra_report["link_addresses"] = {  # where each end was at the end (moves change it)
            f"{a}-{b}": {a: first, b: second} for (a, b), (_, first, second) in self.links.items()}
        super().write_report(verdict, counters)


def wait_gone(name: str, timeout: float = 30) -> bool:
    """True once no container or network of compose project ``name`` is left."""
    deadline = time.monotonic() + timeout
    while True:
        ps = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={name}-"], capture_output=True,
                            text=True).stdout.split()
        nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name={name}-"],
                              capture_output=True, text=True).stdout.split()
        if not ps and not nets:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
