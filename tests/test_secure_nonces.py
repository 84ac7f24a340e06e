"""Nonce counters never repeat: not within a process, not across restarts or kills."""

import signal
import subprocess
import sys
import textwrap

import pytest

from mvds.secure import NonceCounter, NonceCounterError


def zero():
    return 0


def test_counters_strictly_increase_across_blocks(tmp_path):
    counter = NonceCounter(tmp_path / "nonce", block_size=4, floor=zero)
    values = [counter.next() for _ in range(20)]
    assert values == list(range(20))
    assert int((tmp_path / "nonce").read_text()) == 20


def test_reservation_is_written_before_the_first_counter_is_used(tmp_path):
    path = tmp_path / "nonce"
    counter = NonceCounter(path, block_size=100, floor=zero)
    assert not path.exists()
    first = counter.next()
    assert int(path.read_text()) >= first + 1


def test_restart_continues_above_every_counter_used(tmp_path):
    path = tmp_path / "nonce"
    used = set()
    for _ in range(5):
        counter = NonceCounter(path, block_size=8, floor=zero)
        batch = [counter.next() for _ in range(13)]
        assert not used & set(batch)
        assert min(batch) > max(used, default=-1)
        used.update(batch)


def test_a_second_instance_while_the_first_is_mid_block_never_repeats(tmp_path):
    # Simulates a process that died mid-block (never closed): the new
    # instance must start above the whole block the dead one reserved.
    path = tmp_path / "nonce"
    dead = NonceCounter(path, block_size=1000, floor=zero)
    dead_values = [dead.next() for _ in range(10)]
    alive = NonceCounter(path, block_size=1000, floor=zero)
    alive_values = [alive.next() for _ in range(2500)]
    assert min(alive_values) >= 1000 > max(dead_values)
    # Even if the "dead" one were in fact still running, re-reading the
    # file when its block runs out moves it above the other's reservation.
    more_dead = [dead.next() for _ in range(2000)]
    assert not set(more_dead) & set(alive_values)


def test_clock_floor_lifts_the_start(tmp_path):
    counter = NonceCounter(tmp_path / "nonce", floor=lambda: 10**15)
    assert counter.next() == 10**15


def test_default_floor_is_wall_clock_microseconds(tmp_path):
    import time

    before = time.time_ns() // 1000
    counter = NonceCounter(tmp_path / "nonce")
    assert counter.next() >= before


@pytest.mark.parametrize("content", ["", "abc", "-5\n", "12 13\n", "9" * 100])
def test_malformed_counter_file_is_refused(tmp_path, content):
    path = tmp_path / "nonce"
    path.write_text(content)
    with pytest.raises(NonceCounterError, match="malformed"):
        NonceCounter(path, floor=zero)


def test_exhausted_counter_is_refused(tmp_path):
    path = tmp_path / "nonce"
    path.write_text(str(2**64 - 2))
    counter = NonceCounter(path, floor=zero)
    assert counter.next() == 2**64 - 2
    assert counter.next() == 2**64 - 1
    with pytest.raises(NonceCounterError, match="exhausted"):
        counter.next()


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(NonceCounterError, match="cannot read nonce counter file .*Not a directory"):
        NonceCounter(blocker / "nonce", floor=zero).next()


def test_failed_reservation_is_a_clear_error(tmp_path):
    path = tmp_path / "nonce"
    counter = NonceCounter(path, block_size=2, floor=zero)
    assert counter.next() == 0
    path.unlink()
    path.mkdir()  # the next reservation can neither read nor replace it
    assert counter.next() == 1  # still inside the reserved block: no file access
    with pytest.raises(NonceCounterError, match="nonce counter file"):
        counter.next()


WORKER = textwrap.dedent(
    """
    import sys
    from mvds.secure import NonceCounter
    counter = NonceCounter(sys.argv[1], block_size=64, floor=lambda: 0)
    while True:
        print(counter.next(), flush=True)
    """
)


def test_sigkill_mid_block_then_restart_never_repeats(tmp_path):
    """A real process killed with SIGKILL while sealing: the next one starts higher."""
    path = tmp_path / "nonce"
    seen: list[int] = []
    for _ in range(3):
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path)], stdout=subprocess.PIPE, text=True
        )
        batch = [int(worker.stdout.readline()) for _ in range(200)]
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        batch += [int(line) for line in worker.stdout.read().split()]
        worker.stdout.close()
        assert batch == sorted(set(batch))
        assert not seen or batch[0] > max(seen)
        seen += batch
