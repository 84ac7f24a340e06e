"""The compose project ``mvds testbed run --compose`` generates (no Docker
needed: the project is a pure function of the scenario), and what compose
mode refuses with one line.  tests/compose/ runs it for real."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from mvds.testbed.compose import ComposeTestbed, free_address, link_addresses, pick_block, project
from mvds.daemon.netem import LinkConditions
from mvds.testbed.generate import Params, generate
from mvds.testbed.runner import TestbedError as RunError  # (not a test class)
from mvds.testbed.scenario import Fault, load_scenario

ROOT = Path(__file__).resolve().parents[2]
BLOCK = ipaddress.IPv4Network("10.210.0.0/16")


def test_one_service_per_node_and_one_network_per_link_for_any_n(tmp_path):
    scenario = generate("ring", Params(nodes=12, link=LinkConditions(loss=0.1)))
    spec = project(scenario, "p", "img", tmp_path, BLOCK, build={"context": "."}, user=None)
    assert sorted(spec["services"]) == sorted(scenario.names)
    assert len(spec["networks"]) == 12
    seen_subnets = set()
    for index, link in enumerate(scenario.links):
        net = spec["networks"][f"l{index}"]
        subnet = net["ipam"]["config"][0]["subnet"]
        assert net["internal"] and net["name"] == f"p-l{index}" and subnet not in seen_subnets
        seen_subnets.add(subnet)
        ip_a = spec["services"][link.a]["networks"][f"l{index}"]["ipv4_address"]
        ip_b = spec["services"][link.b]["networks"][f"l{index}"]["ipv4_address"]
        assert ipaddress.ip_address(ip_a) in ipaddress.ip_network(subnet)
        # each end reaches the other at its address on their link's network
        assert f"{link.b}@{ip_b}" in spec["services"][link.a]["environment"]["MVDS_LINKS"].split()
        assert f"{link.a}@{ip_a}" in spec["services"][link.b]["environment"]["MVDS_LINKS"].split()
    first, *rest = scenario.names
    assert "build" in spec["services"][first] and all("build" not in spec["services"][n] for n in rest)
    env = spec["services"][scenario.names[1]]["environment"]
    assert env["MVDS_LINKS_FILE"] == "/data/links.toml" and env["MVDS_SEED"] == "1001"
    volumes = spec["services"][first]["volumes"]
    assert volumes == [f"{(tmp_path / 'nodes' / first).resolve()}:/data", f"{(tmp_path / 'peers').resolve()}:/peers"]


def test_node_settings_reach_the_entrypoint(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "sketch.toml")
    spec = project(scenario, "p", "img", tmp_path, BLOCK, build=None, user="1000:1000")
    a, c = spec["services"]["a"], spec["services"]["c"]
    assert a["environment"]["MVDS_SCHEDULE"] == "up 2s, down 2s" and a["environment"]["MVDS_LOSS"] == "0.2"
    assert c["environment"]["MVDS_MODE"] == "interactive" and "MVDS_LOSS" not in c["environment"]
    assert a["user"] == "1000:1000" and "build" not in a


def test_link_networks_avoid_docker_networks_in_use():
    used = [ipaddress.IPv4Network("10.200.0.0/16"), ipaddress.IPv4Network("10.201.3.0/24")]
    assert pick_block(used) == ipaddress.IPv4Network("10.202.0.0/16")
    assert link_addresses(BLOCK, 1) == ("10.210.0.8/29", "10.210.0.10", "10.210.0.11")
    with pytest.raises(RunError):
        link_addresses(BLOCK, 8192)


def test_a_moved_end_takes_an_address_of_its_link_that_neither_end_uses():
    subnet, a, b = link_addresses(BLOCK, 1)
    assert free_address(subnet, {a, b}) == "10.210.0.12"  # .9 is the gateway
    assert free_address(subnet, {"10.210.0.12", b}) == "10.210.0.10"  # moved again: back to a free one
    assert free_address(subnet, {"10.210.0.10", "10.210.0.11", "10.210.0.12", "10.210.0.13"}) \
        == "10.210.0.14"  # .15 is the broadcast address


def test_several_groups_are_refused_with_one_line_and_move_is_not(tmp_path):
    scenario = load_scenario(ROOT / "scenarios" / "sketch.toml")
    moved = dataclasses.replace(scenario, faults=(Fault(at=2.0, action="move", node="a"),))
    ComposeTestbed(moved, tmp_path).check()  # move: a new address on each link network
    group = scenario.groups[0]
    split = dataclasses.replace(scenario, groups=(dataclasses.replace(group, members=("a", "b")),))
    with pytest.raises(RunError, match="one group shared by every node"):
        ComposeTestbed(split, tmp_path).check()


def test_image_without_compose_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "mvds", "testbed", "run", str(ROOT / "scenarios" / "sketch.toml"),
                             "--image", "x"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and result.stderr.strip() == "mvds: --image goes with --compose"
