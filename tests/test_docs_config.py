"""docs/CONFIG.md documents every setting the code has."""

import dataclasses
import pathlib

from mvds.daemon.config import NodeConfig, PeerConfig

DOC = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "CONFIG.md").read_text()


def test_every_setting_is_documented():
    for field in dataclasses.fields(NodeConfig):
        if field.name != "peers":
            assert f"| `{field.name}` |" in DOC, f"docs/CONFIG.md lacks the setting {field.name}"


def test_every_peer_key_is_documented():
    for field in dataclasses.fields(PeerConfig):
        assert f"\n{field.name} = " in DOC, f"docs/CONFIG.md lacks the peer key {field.name}"
