"""kill -9 a writer at any moment: every document is whole or absent, nothing committed is lost.

A writer process adds, upserts, deletes, compacts and checkpoints an index; the test kills it
with SIGKILL, either at a random moment or at a chosen step of the write protocol, then checks
the folder with ``colbridge check``, reopens it and compares every stored document (text,
metadata, token vectors, findable by search) with what the writer had committed. The only
operation allowed to be either applied or not is the one in flight at the kill, and then as a
whole. The same folder lives on from trial to trial, so the damage of each kill meets the next.
"""

from __future__ import annotations

import collections
import random
import signal

import pytest
from colbridge import EmbeddedIndex, GraphParams

from .conftest import CRASH_POINTS, HashEncoder, apply, check_clean, run_writer, stored_state

WRITER_ARGS = ("--batch", "80", "--max-docs", "600")


@pytest.fixture
def crash_index(tmp_path):
    path = tmp_path / "index"
    # A small graph build keeps each kill-and-reopen cycle short; the protocol is the same.
    EmbeddedIndex.open_or_create(path, model=HashEncoder(),
                                 graph=GraphParams(M=8, ef_construction=32)).close()
    return path


def _trial(path, state, seed, stats, *args, kill_after=None, document_length=4096):
    run = run_writer(path, seed, *WRITER_ARGS, "--document-length", str(document_length), *args,
                     kill_after=kill_after)
    assert run.returncode == -signal.SIGKILL, f"writer ended on its own:\n{run.stderr[-2000:]}"
    committed = state
    for op in run.committed_ops:
        committed = apply(committed, op)
    with_in_flight = apply(committed, run.in_flight)
    problems = check_clean(path)
    assert not problems, problems
    actual = stored_state(path, document_length)
    assert actual in (committed, with_in_flight), (
        f"trial {seed}: {len(set(committed) ^ set(actual))} ids differ from the committed state "
        f"(in flight: {run.in_flight and run.in_flight['kind']})"
    )
    stats["trials"] += 1
    stats["committed operations"] += len(run.committed_ops)
    stats["documents verified"] += len(actual)
    stats["lost"] += len(set(committed) - set(actual) - set((run.in_flight or {}).get("ids", ())))
    stats[f"killed during {run.in_flight['kind'] if run.in_flight else 'open/idle'}"] += 1
    if run.in_flight and actual == with_in_flight != committed:
        stats["in-flight operation found applied"] += 1
    return actual


def _report(capsys, title, stats):
    with capsys.disabled():
        print(f"\n{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())))


def _random_kills(path, trials, capsys, title, seed=0):
    rng = random.Random(seed)
    stats: collections.Counter = collections.Counter()
    state: dict[str, int] = {}
    for trial in range(trials):
        state = _trial(path, state, seed * 100_000 + trial, stats, kill_after=rng.uniform(0, 1.0))
    _report(capsys, title, stats)
    assert stats["lost"] == 0
    assert stats["trials"] == trials


def test_random_kills(crash_index, capsys):
    _random_kills(crash_index, 3, capsys, "crash trials (random kills)")


def test_kill_at_each_step_of_the_write_protocol(crash_index, capsys):
    stats: collections.Counter = collections.Counter()
    run = run_writer(crash_index, 1, *WRITER_ARGS, "--ops", "2")  # something to lose
    assert run.returncode == 0, run.stderr[-2000:]
    state = stored_state(crash_index)
    for number, point in enumerate(CRASH_POINTS):
        state = _trial(crash_index, state, 2 + number, stats, "--crash-at", point)
    _report(capsys, "crash trials (one kill at each protocol step)", stats)
    assert stats["lost"] == 0 and stats["trials"] == len(CRASH_POINTS)


SHORT = 13  # a hash-encoder document length at which most writer texts are split into passages


def test_kill_at_each_step_with_split_documents(tmp_path, capsys):
    """A split document is written with all its passages or not at all, at every step."""
    path = tmp_path / "index"
    EmbeddedIndex.open_or_create(path, model=HashEncoder(SHORT),
                                 graph=GraphParams(M=8, ef_construction=32)).close()
    stats: collections.Counter = collections.Counter()
    run = run_writer(path, 1, *WRITER_ARGS, "--document-length", str(SHORT), "--ops", "2")
    assert run.returncode == 0, run.stderr[-2000:]
    state = stored_state(path, SHORT)
    with EmbeddedIndex(path, model=HashEncoder(SHORT), create=False) as index:
        assert index.stats()["split_documents"] > len(state) / 2  # the test is about them
    for number, point in enumerate(CRASH_POINTS):
        state = _trial(path, state, 2 + number, stats, "--crash-at", point,
                       document_length=SHORT)
    _report(capsys, "crash trials with split documents (one kill at each protocol step)", stats)
    assert stats["lost"] == 0 and stats["trials"] == len(CRASH_POINTS)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_many_random_kills(crash_index, capsys):
    _random_kills(crash_index, 200, capsys, "crash trials (slow run, random kills)", seed=7)


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_step_repeatedly(crash_index, point, capsys):
    stats: collections.Counter = collections.Counter()
    state: dict[str, int] = {}
    for hit in range(1, 5):
        state = _trial(crash_index, state, 10 + hit, stats, "--crash-at", point,
                       "--crash-hit", str(hit))
    assert stats["lost"] == 0
    _report(capsys, f"crash trials at {point}", stats)
