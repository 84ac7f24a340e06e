#!/usr/bin/env python3
"""Regenerate mvds/_pb/mvds_pb2.py from proto/mvds.proto.

The generated module is committed so that installing mvds never needs protoc.
tests/test_proto_fresh.py runs this script into a temporary folder and fails
when the committed module differs, so schema edits cannot silently drift from
the code that parses them.  The generator is pinned (grpcio-tools in the
``dev``/``test`` extras) because protoc's output differs between versions.

Usage: python scripts/gen_proto.py [--out DIR]
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "mvds" / "_pb"


def generate(out_dir: pathlib.Path) -> pathlib.Path:
    """Run protoc (from grpcio-tools) and return the path of the module."""
    try:
        from grpc_tools import protoc
    except ImportError:  # pragma: no cover - depends on the environment
        sys.exit("gen_proto: grpcio-tools is missing; pip install -e '.[test]'")
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out_dir}",
        str(PROTO_DIR / "mvds.proto"),
    ]
    if protoc.main(args) != 0:
        sys.exit("gen_proto: protoc failed")
    return out_dir / "mvds_pb2.py"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    print(generate(args.out))


if __name__ == "__main__":
    main()
