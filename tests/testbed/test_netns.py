"""`mvds testbed run --netns`: real daemons in Linux network namespaces,
links shaped by nftables and tc in the kernel (docs/TESTBED.md).

The pure parts (addresses, the nftables ruleset, the tc commands, which
condition goes where) are checked everywhere; the runs need root, ``ip``,
``tc`` and ``nft`` and skip without them, except in CI (CI=true), where
they fail instead: CI cannot pass by skipping (.ci/run installs nftables).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mvds.daemon.netem import LinkConditions
from mvds.testbed import netns
from mvds.testbed.netns import PREFIX, rule_counters, ruleset, run_of, split, tc_commands

HERE = Path(__file__).parent


# -- pure ---------------------------------------------------------------------------


def test_split_keeps_delay_in_the_transport_without_kernel_netem():
    c = LinkConditions(latency=0.05, jitter=0.01, loss=0.1, duplicate=0.05, reorder=0.2, rate=8000,
                       cut=True)
    kernel, transport = split(c, netem=False)
    assert kernel == LinkConditions(loss=0.1, duplicate=0.05, rate=8000)
    assert transport == LinkConditions(latency=0.05, jitter=0.01, reorder=0.2)
    kernel, transport = split(c, netem=True)
    assert kernel == LinkConditions(latency=0.05, jitter=0.01, loss=0.1, duplicate=0.05, reorder=0.2,
                                    rate=8000)
    assert transport.transparent  # nothing left for the daemon; cuts are never in the links file


def test_ruleset_drops_on_arrival_and_duplicates_on_departure():
    text = ruleset({"10.88.1.2": LinkConditions(loss=0.1), "10.88.1.3": LinkConditions()},
                   {"10.88.1.2": LinkConditions(duplicate=0.05), "10.88.1.3": LinkConditions(loss=0.5)},
                   ["10.88.1.3"])
    assert text.startswith("table ip mvdsnet\ndelete table ip mvdsnet\n")  # atomic replace
    incoming, outgoing = text.split("chain out")
    assert "hook prerouting" in incoming and "hook output" in outgoing
    assert "elements = { 10.88.1.3 }" in incoming
    assert 'ip saddr 10.88.1.2 numgen random mod 1000000 < 100000 counter drop comment "loss"' in incoming
    assert "10.88.1.3 numgen" not in text  # no loss on that direction towards us; its own loss is not ours
    assert 'ip daddr 10.88.1.2 numgen random mod 1000000 < 50000 counter dup to 10.88.1.2 device "eth0"' \
        in outgoing
    assert "drop" not in outgoing  # a drop on output is an EPERM to sendto, not a lost datagram
    assert "elements" not in ruleset({}, {}, [])  # an empty set has no elements line


def test_tc_commands_shape_only_what_needs_the_kernel_queue():
    assert tc_commands({"10.88.1.2": LinkConditions(latency=0.05, loss=0.1)}, netem=False) == []
    cmds = tc_commands({"10.88.1.2": LinkConditions(rate=8000), "10.88.1.3": LinkConditions()}, netem=False)
    text = [" ".join(c) for c in cmds]
    assert text[0] == "qdisc add dev eth0 root handle 1: htb default 1"
    assert "class add dev eth0 parent 1: classid 1:10 htb rate 64000bit ceil 64000bit quantum 1514" in text
    assert "qdisc add dev eth0 parent 1:10 handle 10: pfifo limit 1000" in text
    assert "filter add dev eth0 parent 1: protocol ip prio 1 u32 match ip dst 10.88.1.2/32 flowid 1:10" \
        in text
    assert not any("10.88.1.3" in t for t in text)
    cmds = tc_commands({"10.88.1.2": LinkConditions(latency=0.05, jitter=0.01, reorder=0.25)}, netem=True)
    leaf = next(" ".join(c) for c in cmds if "netem" in c)
    # uniform in [latency, latency + jitter): netem's +-jitter around its middle
    assert leaf.endswith("netem limit 1000 delay 55000us 5000us reorder 25%")
    assert "rate 10gbit" in " ".join(next(c for c in cmds if "1:10" in c and c[0] == "class"))


def test_names_addresses_and_counters():
    assert run_of(f"{PREFIX}1234-n7") == 1234 and run_of(f"{PREFIX}1234-hub") == 1234
    assert run_of("mvdsnet") is None and run_of("other-1234-n0") is None
    assert netns.node_address(0) == "10.88.1.1" and netns.moved_address(0) == "10.88.128.1"
    listing = {"nftables": [
        {"metainfo": {}}, {"table": {"name": "mvdsnet"}},
        {"rule": {"comment": "loss", "expr": [{"match": {}}, {"counter": {"packets": 3, "bytes": 9}}]}},
        {"rule": {"comment": "loss", "expr": [{"counter": {"packets": 2, "bytes": 9}}]}},
        {"rule": {"comment": "cut", "expr": [{"counter": {"packets": 0, "bytes": 0}}]}},
        {"rule": {"expr": [{"counter": {"packets": 9, "bytes": 9}}]}},
    ]}
    assert rule_counters(listing) == {"loss": 5, "cut": 0}


def test_why_netns_cannot_run_is_one_line(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "--netns needs root (network namespaces, nftables, tc)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda tool: None if tool == "nft" else "/bin/" + tool)
    assert netns.unavailable() == "--netns needs `nft` (Debian package nftables)"
    result = subprocess.run([sys.executable, "-m", "mvds", "testbed", "run",
                             str(HERE / "scenarios" / "netns3.toml"), "--netns", "--compose"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and result.stderr.strip() == "mvds: --compose and --netns: pick one"


# -- live ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kernel():
    reason = netns.unavailable()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true but the --netns tests cannot run: {reason}", pytrace=False)
        pytest.skip(reason)


def ours(pid: int) -> list[str]:
    """Namespaces, root-namespace links and nftables tables named for run ``pid``."""
    left = [n for n in netns.namespaces() if run_of(n) == pid]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    left += [line for line in links.splitlines()
             if f"{PREFIX}{pid}" in line or re.match(r"\d+: (n\d+|br0)[@:]", line)]
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    left += [line for line in tables.splitlines() if netns.TABLE in line]
    return left


def test_three_nodes_across_namespaces_pass_with_kernel_drops(kernel, tmp_path):
    out = tmp_path / "run"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mvds", "testbed", "run",
                           str(HERE / "scenarios" / "netns3.toml"), "--netns", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    wall = time.monotonic() - started
    assert proc.returncode == 0 and "**PASS**" in proc.stdout, proc.stdout + proc.stderr
    assert "faults 7/7" in proc.stderr
    report = json.loads((out / "report.json").read_text())
    verdict = report["verdict"]
    assert verdict["missing"] == verdict["duplicates"] == verdict["causal_violations"] == 0
    assert verdict["acknowledged_appends"] >= 20 and verdict["retransmissions"] > 0
    assert verdict["mode"].startswith("netns (3 namespaces + hub; kernel: cut, loss, duplicate, rate")
    # The kernel did the dropping and the duplicating, not the daemons:
    kernel_total = verdict["kernel"]
    assert kernel_total["cut"] > 0 and kernel_total["loss"] > 0 and kernel_total["duplicate"] > 0
    assert "kernel: dropped on cut links" in proc.stdout
    links = (out / "nodes" / "a" / "links.toml").read_text()
    assert "loss = 0.0" in links and "duplicate = 0.0" in links and "cut = false" in links
    # without the kernel's netem the delay stays in the daemon's transport
    assert ("latency = 0.0" if report["netns"]["netem"] else "latency = 0.05") in links
    # c moved to a new address in its namespace and was reached there.
    assert report["netns"]["addresses"]["c"] == netns.moved_address(0)
    c_config = (out / "nodes" / "c" / "mvds.toml").read_text()
    assert f'"{netns.moved_address(0)}:{netns.PORT}"' in c_config
    for name in ("a", "c"):  # a killed and restarted, c moved: both started twice
        assert (out / "nodes" / name / "daemon.log").read_text().count('"node.started"') == 2, name
    # Nothing of the run is left: namespaces, links, tables.
    run_pid = run_of(report["netns"]["run"] + "-hub")
    assert run_pid is not None and ours(run_pid) == []
    print(f"netns3: wall {wall:.1f} s, verdict {verdict['delivered']}/{verdict['expected_deliveries']}, "
          f"convergence {verdict['convergence_s']} s, kernel {kernel_total}")


def test_a_terminated_run_and_a_dead_runner_leave_nothing_behind(kernel, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"{PREFIX}{dead.pid}-n0"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    subprocess.run(["ip", "-n", stale, "link", "add", "x0", "type", "veth", "peer", "name", "x1"],
                   check=True)
    scenario = tmp_path / "long.toml"
    scenario.write_text((HERE / "scenarios" / "netns3.toml").read_text()
                        .replace('duration = "40s"', 'duration = "120s"')
                        .replace('stop = "5s"', 'stop = "100s"'))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mvds", "testbed", "run", str(scenario), "--netns",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the live line: once a second once the run is under way
            if "t=" in line and float(line.split("t=")[1].split("s")[0]) >= 1.5:
                break
        assert len([n for n in netns.namespaces() if run_of(n) == proc.pid]) == 4  # 3 nodes + hub
        assert stale not in netns.namespaces()  # swept at start: its runner is dead
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
        subprocess.run(["ip", "netns", "delete", stale], capture_output=True)
    assert proc.returncode == 143, rest
    assert "the daemons were stopped and the namespaces removed" in rest
    assert ours(proc.pid) == []


BLAST = r"""
import json, socket, sys, time
mode, host, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
if mode == "recv":
    s.bind((host, 9999))
    s.settimeout(2.0)
    times = []
    try:
        while True:
            s.recv(65536)
            times.append(time.monotonic())
            s.settimeout(0.6)
    except socket.timeout:
        pass
    print(json.dumps({"received": len(times), "span": times[-1] - times[0] if times else 0.0}))
else:
    errors = 0
    for _ in range(count):
        try:
            s.sendto(b"x" * size, (host, 9999))
        except OSError:
            errors += 1
        time.sleep(0.0005)
    print(json.dumps({"errors": errors}))
"""


def blast(tb, src: str, dst: str, count: int, size: int) -> tuple[dict, dict]:
    """``count`` datagrams of ``size`` bytes from node ``src``'s namespace to
    node ``dst``'s address: what the sender saw, what the receiver got."""
    to = tb.nodes[dst].host
    receiver = subprocess.Popen(["ip", "netns", "exec", tb.ns(dst), sys.executable, "-c", BLAST, "recv", to,
                                 "0", "0"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sent = subprocess.run(["ip", "netns", "exec", tb.ns(src), sys.executable, "-c", BLAST, "send", to,
                           str(count), str(size)], capture_output=True, text=True, timeout=60, check=True)
    got = receiver.communicate(timeout=60)[0]
    return json.loads(sent.stdout), json.loads(got)


def test_the_kernel_applies_loss_duplication_rate_and_cuts(kernel, tmp_path):
    """No daemons: datagrams between two namespaces of a run's network,
    counted, show nftables' loss, duplication and cuts and tc's rate, and a
    kernel drop is silent for the sender (no EPERM)."""
    import trio

    from mvds.testbed.netns import NetnsTestbed
    from mvds.testbed.scenario import Fault, load_scenario

    path = tmp_path / "kern.toml"
    path.write_text('name = "kern"\nduration = "10s"\n[[nodes]]\nname = "a"\n[[nodes]]\nname = "b"\n'
                    '[[links]]\na = "a"\nb = "b"\na_to_b = { loss = 0.3 }\n'
                    'b_to_a = { duplicate = 0.5, rate = "320kbit" }\n')
    tb = NetnsTestbed(load_scenario(path), tmp_path / "out")
    tb.prepare()
    try:
        tb.build_network()
        sent, got = blast(tb, "a", "b", 2000, 64)  # 30% lost on arrival at b
        assert sent["errors"] == 0 and 1240 <= got["received"] <= 1560, got
        sent, got = blast(tb, "b", "a", 40, 1000)  # half sent twice, through 40,000 bytes a second
        assert sent["errors"] == 0 and 48 <= got["received"] <= 72, got
        expected = got["received"] * 1028 / 40000  # UDP + IP headers on the wire
        assert 0.75 * expected <= got["span"] <= 1.5 * expected, (got, expected)
        trio.run(tb.apply, Fault(at=1.0, action="partition", links=(("a", "b"),)))
        for src, dst in (("a", "b"), ("b", "a")):
            sent, got = blast(tb, src, dst, 100, 64)
            assert sent["errors"] == 0 and got["received"] == 0, (src, got)
        trio.run(tb.apply, Fault(at=2.0, action="heal", links=(("a", "b"),)))
        sent, got = blast(tb, "a", "b", 200, 64)
        assert got["received"] > 100
        counters = {name: tb.nft_counters(node) for name, node in tb.nodes.items()}
        assert counters["b"]["cut"] == 100  # a's 100, dropped on arrival at b
        assert 120 <= counters["a"]["cut"] <= 180  # b's 100 and their duplicates
        assert counters["b"]["loss"] > 500 and counters["b"]["duplicate"] > 10
    finally:
        tb.teardown()
    assert ours(os.getpid()) == []
