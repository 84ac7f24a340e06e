"""Soak test: four real daemons, a lossy network with offline periods, for many minutes.

    python scripts/soak.py                      # 10 minutes, 50% loss (the recorded run)
    python scripts/soak.py --minutes 1          # a short run
    python scripts/soak.py --minutes 30 --out soak.json --dir /tmp/soak

Not a CI test (it takes as long as you ask).  It starts four `mvds run`
processes in the research sketch's topology (links A-B, A-C, B-D, C-D, as
`mvds demo`), every daemon dropping ``--loss`` of its datagrams in and out,
A, B and D on online/offline schedules, C always on and in interactive
mode.  Each node appends a message every ``--interval`` seconds through the
control API while a reader per node follows it (subscribe with a cursor).
Every ``--sample`` seconds it records each daemon's resident memory and
open file descriptors from /proc.

After ``--minutes`` it stops appending and *heals* the network: each
daemon is stopped (SIGTERM) and restarted without loss or schedule.  Then
it waits until every node holds every message and every sync state is
empty, and checks:

* nothing lost: each node's reader saw every message the other three
  appended, and each node's store holds all of them (``mvds tail``);
* nothing duplicated: no reader saw a message id or a seq twice;
* drained: every peer's pending OFFER/REQUEST/MESSAGE count is 0;
* flat resources: RSS and open fds at the end of the lossy phase against
  their values after the first minute.

It prints a summary and writes it as JSON (``--out``); exit status 0 only
if every check passed.  docs/RELIABILITY.md records the last full run.
"""

from __future__ import annotations

import argparse
from collections import Counter
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mvds.daemon.config import PeerConfig, load_config, save_config
from mvds.daemon.control_client import ControlClient, ControlError
from mvds.daemon.setup import init_node_dir

GROUP = "soak"
LINKS = [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]
SCHEDULES = {
    # Bursty mobiles out of phase, a desktop that sleeps now and then, one always on.
    "A": "up 20s, down 20s",
    "B": "down 10s, up 20s, down 10s",
    "C": "",
    "D": "up 60s, down 15s",
}
MODES = {"A": "batch", "B": "batch", "C": "interactive", "D": "batch"}


@dataclass
class SoakNode:
    name: str
    path: Path
    process: subprocess.Popen | None = None
    appended: list[str] = field(default_factory=list)
    append_errors: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, rss kB, fds)


def control(node: SoakNode, timeout: float = 30.0) -> ControlClient:
    return ControlClient(node.path / "mvds.sock", timeout=timeout)


def request(node: SoakNode, op: str, **fields: Any) -> dict[str, Any]:
    with control(node) as client:
        return client.request(op, **fields)


def setup(base: Path, seed: int) -> dict[str, SoakNode]:
    nodes = {name: SoakNode(name, base / name) for name in SCHEDULES}
    ids = {}
    for name, node in nodes.items():
        _, identity = init_node_dir(node.path)
        ids[name] = identity.peer_id_hex
    listens = {name: load_config(node.path / "mvds.toml").listen for name, node in nodes.items()}
    for name, node in nodes.items():
        config = load_config(node.path / "mvds.toml")
        config.mode = MODES[name]
        config.log_format = "json"
        config.groups = [GROUP]
        config.seed = seed + ord(name)
        for a, b in LINKS:
            if name in (a, b):
                other = b if name == a else a
                config.peers.append(PeerConfig(other, ids[other], listens[other], [GROUP]))
        save_config(node.path / "mvds.toml", config)
    return nodes


def start(node: SoakNode, extra: list[str], timeout: float = 30.0) -> None:
    with open(node.path / "daemon.log", "ab") as log:
        node.process = subprocess.Popen(
            [sys.executable, "-m", "mvds", "run", str(node.path), *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    deadline = time.monotonic() + timeout
    while True:
        if node.process.poll() is not None:
            raise RuntimeError(f"{node.name} exited with {node.process.returncode}")
        try:
            request(node, "ping")
            return
        except ControlError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} did not start within {timeout} s") from None
            time.sleep(0.05)


def stop(node: SoakNode) -> None:
    process = node.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def sample(node: SoakNode, t: float) -> None:
    """Resident memory (kB) and open file descriptors of the daemon, from /proc."""
    pid = node.process.pid if node.process else None
    if pid is None:
        return
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return
    node.samples.append((t, rss, fds))


class Appender(threading.Thread):
    """Appends one message every ``interval`` seconds (with jitter) until stopped."""

    def __init__(self, node: SoakNode, interval: float, rng: random.Random, stop_flag: threading.Event):
        super().__init__(daemon=True)
        self.node, self.interval, self.rng, self.stop_flag = node, interval, rng, stop_flag

    def run(self) -> None:
        index = 0
        while not self.stop_flag.is_set():
            body = f"{self.node.name}-{index} " + "x" * self.rng.randrange(0, 400)
            try:
                reply = request(self.node, "append", group=GROUP, text=body)
                self.node.appended.append(reply["message_id"])
                index += 1
            except ControlError:
                self.node.append_errors += 1
            self.stop_flag.wait(self.interval * self.rng.uniform(0.5, 1.5))


class Reader(threading.Thread):
    """Follows one node from a seq cursor; reconnects when the daemon restarts."""

    def __init__(self, node: SoakNode, stop_flag: threading.Event) -> None:
        super().__init__(daemon=True)
        self.node, self.stop_flag = node, stop_flag
        self.seen: list[tuple[int, str]] = []
        self.cursor = 0
        self.reconnects = 0
        self.errors: Counter[str] = Counter()
        self.client: ControlClient | None = None

    def run(self) -> None:
        while not self.stop_flag.is_set():
            try:
                self.client = control(self.node, timeout=None)
                for event in self.client.stream("subscribe", since=self.cursor, follow=True):
                    if event.get("event") == "message":
                        message = event["message"]
                        self.seen.append((message["seq"], message["id"]))
                        self.cursor = message["seq"]
            except (ControlError, OSError, ValueError) as exc:
                self.errors[f"{type(exc).__name__}: {exc}"[:80]] += 1
            finally:
                if self.client is not None:
                    try:
                        self.client.close()
                    except OSError:
                        pass
            self.reconnects += 1
            self.stop_flag.wait(0.2)

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.sock.shutdown(2)
            except OSError:
                pass


def pending_total(node: SoakNode) -> int:
    status = request(node, "status")["status"]
    return sum(sum(peer["pending"].values()) for peer in status["peers"])


def summarize_samples(samples: list[tuple[float, int, int]], warmup: float) -> dict[str, Any]:
    if not samples:
        return {}
    after = [s for s in samples if s[0] >= warmup] or samples
    first, last = after[0], after[-1]
    rss = [s[1] for s in after]
    fds = [s[2] for s in after]
    by_minute: dict[int, tuple[int, int]] = {}
    for t, r, f in samples:  # the first sample of each minute
        by_minute.setdefault(int(t // 60), (r, f))
    return {
        "rss_kb_fds_by_minute": {str(m): list(v) for m, v in sorted(by_minute.items())},
        "samples": len(samples),
        "rss_kb_first": first[1], "rss_kb_last": last[1], "rss_kb_max": max(rss),
        "rss_kb_median": int(statistics.median(rss)),
        "fds_first": first[2], "fds_last": last[2], "fds_max": max(fds), "fds_min": min(fds),
        "first_at_s": round(first[0], 1), "last_at_s": round(last[0], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the lossy phase (default 10)")
    parser.add_argument("--loss", type=float, default=0.5, help="loss on every daemon, in and out (default 0.5)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="mean seconds between a node's appends (default 1)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between RSS/fd samples")
    parser.add_argument("--heal-timeout", type=float, default=600.0,
                        help="seconds to wait for full delivery after healing (default 600)")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--dir", help="keep the node directories here (default: temporary, removed)")
    parser.add_argument("--out", help="write the summary as JSON to this file")
    args = parser.parse_args(argv)

    if args.dir:
        base = Path(args.dir).absolute()
        base.mkdir(parents=True, exist_ok=True)
        if any(base.iterdir()):
            parser.error(f"{base} is not empty")
    else:
        base = Path(tempfile.mkdtemp(prefix="mvds-soak-"))
    rng = random.Random(args.seed)
    nodes = setup(base, args.seed)
    stop_appending = threading.Event()
    stop_reading = threading.Event()
    readers = {name: Reader(node, stop_reading) for name, node in nodes.items()}
    result: dict[str, Any] = {
        "minutes": args.minutes, "loss": args.loss, "interval_s": args.interval, "seed": args.seed,
        "schedules": SCHEDULES, "modes": MODES, "links": LINKS,
    }
    ok = False
    try:
        for name, node in nodes.items():
            extra = ["--loss", str(args.loss), "--seed", str(args.seed + ord(name))]
            if SCHEDULES[name]:
                extra += ["--schedule", SCHEDULES[name]]
            start(node, extra)
        for reader in readers.values():
            reader.start()
        appenders = [Appender(node, args.interval, random.Random(rng.random()), stop_appending)
                     for node in nodes.values()]
        began = time.monotonic()
        for appender in appenders:
            appender.start()
        lossy = args.minutes * 60
        next_report = 60.0
        while (elapsed := time.monotonic() - began) < lossy:
            for node in nodes.values():
                sample(node, elapsed)
            if elapsed >= next_report:
                total = sum(len(n.appended) for n in nodes.values())
                held = {n: len(r.seen) for n, r in readers.items()}
                rss = {n: node.samples[-1][1] // 1024 for n, node in nodes.items() if node.samples}
                print(f"[{elapsed / 60:5.1f} min] appended {total}, received {held}, RSS MB {rss}",
                      flush=True)
                next_report += 60.0
            time.sleep(min(args.sample, max(0.0, lossy - elapsed)))
        stop_appending.set()
        for appender in appenders:
            appender.join(timeout=60)
        lossy_elapsed = time.monotonic() - began
        for node in nodes.values():
            sample(node, lossy_elapsed)
        before_heal = {}
        for name, node in nodes.items():
            status = request(node, "status")["status"]
            before_heal[name] = {
                "pending": sum(sum(p["pending"].values()) for p in status["peers"]),
                "drops": status["drops"],
                "retransmissions": sum(p["retransmissions"] for p in status["peers"]),
                "datagrams_out": status["datagrams_out"],
                "datagrams_in": status["datagrams_in"],
                "engine": {k: v for k, v in status["engine"].items()
                           if k in ("requests_capped", "dropped_unshared_group", "gave_up",
                                    "duplicates_in", "stored_in", "reachability_pulls")},
            }
        result["before_heal"] = before_heal
        print(f"lossy phase over after {lossy_elapsed:.0f} s; healing (restart without loss or schedule)",
              flush=True)

        # Heal: restart every daemon without loss or schedule.
        healed_at = time.monotonic()
        for node in nodes.values():
            stop(node)
        for node in nodes.values():
            start(node, ["--loss", "0", "--schedule", ""])
        expected = {name: {i for other, n in nodes.items() if other != name for i in n.appended}
                    for name in nodes}
        deadline = healed_at + args.heal_timeout
        drained = False
        while time.monotonic() < deadline:
            have = all(expected[name] <= {i for _, i in readers[name].seen} for name in nodes)
            if have and all(pending_total(node) == 0 for node in nodes.values()):
                drained = True
                break
            time.sleep(1.0)
        heal_seconds = time.monotonic() - healed_at
        time.sleep(2.0)  # anything still in flight (a duplicate) would show up now

        checks: dict[str, Any] = {}
        for name, node in nodes.items():
            seen_ids = [i for _, i in readers[name].seen]
            seqs = [s for s, _ in readers[name].seen]
            tail = subprocess.run(
                [sys.executable, "-m", "mvds", "tail", str(node.path), "--json"],
                capture_output=True, text=True, timeout=120,
            )
            stored = [json.loads(line)["id"] for line in tail.stdout.splitlines()]
            checks[name] = {
                "appended": len(node.appended),
                "append_errors": node.append_errors,
                "expected_from_others": len(expected[name]),
                "received": len(seen_ids),
                "missing": len(expected[name] - set(seen_ids)),
                "unexpected": len(set(seen_ids) - expected[name]),
                "duplicate_ids": len(seen_ids) - len(set(seen_ids)),
                "seq_in_order_no_gaps": seqs == list(range(1, len(seqs) + 1)),
                "stored_by_tail": len(stored),
                "stored_missing": len(expected[name] - set(stored)),
                "stored_duplicates": len(stored) - len(set(stored)),
                "pending_after_heal": pending_total(node),
                "reader_reconnects": readers[name].reconnects,
                "reader_errors": dict(readers[name].errors),
                "resources_lossy_phase": summarize_samples(node.samples, warmup=60.0),
            }
        result["checks"] = checks
        result["lossy_seconds"] = round(lossy_elapsed, 1)
        result["heal_seconds"] = round(heal_seconds, 1)
        result["drained"] = drained
        result["messages"] = sum(len(n.appended) for n in nodes.values())
        ok = drained and all(
            c["missing"] == 0 and c["unexpected"] == 0 and c["duplicate_ids"] == 0
            and c["seq_in_order_no_gaps"] and c["stored_missing"] == 0
            and c["stored_duplicates"] == 0 and c["pending_after_heal"] == 0
            for c in checks.values()
        )
        result["ok"] = ok
    finally:
        stop_reading.set()
        for reader in readers.values():
            reader.close()
        for node in nodes.values():
            stop(node)
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)

    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("SOAK PASSED" if ok else "SOAK FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
