"""Run one fuzz target under atheris (coverage-guided, libFuzzer).

    python -m fuzz envelope --runs 1000000          # 1M inputs, stats at the end
    python -m fuzz payload --seconds 60             # a minute
    python -m fuzz control --replay crash-1a2b...   # re-run one saved input
    python -m fuzz --list

Needs atheris, ``pip install -e '.[fuzz]'`` (not a test dependency: CI runs the same
targets under hypothesis, tests/test_fuzz.py).  Crashing inputs are saved
as ``crash-<sha1>`` in the current directory; the corpus of interesting
inputs goes to ``fuzz/corpus/NAME/`` (not committed).  The mvds package is
instrumented for coverage; libFuzzer's final stats (``-print_final_stats``)
report executions, executions per second and edges covered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", nargs="?", help="envelope, payload, config, control or control_server")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many inputs")
    parser.add_argument("--seconds", type=int, default=None, help="stop after this long")
    parser.add_argument("--replay", metavar="FILE", nargs="+", help="run these inputs once, no fuzzing")
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--no-corpus", action="store_true", help="do not keep a corpus directory")
    args, extra = parser.parse_known_args(argv)

    import atheris

    with atheris.instrument_imports(include=["mvds"]):
        from fuzz.targets import TARGETS

    if args.list or not args.target:
        print("\n".join(TARGETS))
        return 0
    if args.target not in TARGETS:
        parser.error(f"unknown target {args.target!r} (known: {', '.join(TARGETS)})")
    target = TARGETS[args.target]()

    if args.replay:
        for name in args.replay:
            target(Path(name).read_bytes())
            print(f"{name}: ok")
        return 0

    libfuzzer = [sys.argv[0], "-print_final_stats=1", "-max_len=4096", "-rss_limit_mb=4096"]
    if args.runs is not None:
        libfuzzer.append(f"-runs={args.runs}")
    if args.seconds is not None:
        libfuzzer.append(f"-max_total_time={args.seconds}")
    libfuzzer += extra
    if not args.no_corpus:
        corpus = Path(__file__).parent / "corpus" / args.target
        corpus.mkdir(parents=True, exist_ok=True)
        libfuzzer.append(str(corpus))
    atheris.Setup(libfuzzer, target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
