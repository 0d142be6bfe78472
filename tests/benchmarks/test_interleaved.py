"""The one interleaving loop of every side-by-side timing (the module's CLI, peers.py, engines_interleaved.py):
each round runs every call once, in an order where every call follows every other equally often."""

from __future__ import annotations

import time
from collections import Counter

from edgeseg.benchmarks.interleaved import interleaved_medians, interleaved_times, round_order
from tests.fault_kit import write_tiny_pair


def test_within_a_round_every_call_follows_every_other_equally_often():
    assert [round_order(i, 4) for i in range(4)] == [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
    for count, period in ((2, 2), (3, 6), (4, 4), (5, 10), (15, 30)):
        orders = [round_order(i, count) for i in range(period)]
        assert all(sorted(order) == list(range(count)) for order in orders)
        after = Counter(pair for order in orders for pair in zip(order, order[1:]))
        assert set(after) == {(a, b) for a in range(count) for b in range(count) if a != b}
        assert len(set(after.values())) == 1, (count, after)  # a merely rotated order fails this from 3 calls


def test_warmup_rounds_run_but_are_not_timed():
    ran: list[str] = []
    calls = [lambda: ran.append("a"), lambda: ran.append("b")]
    times = interleaved_times(calls, rounds=3, warmup=2, lead_in=0)
    assert ran == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]  # round_order(i, 2): ab, ba, ab, ...
    assert [len(t) for t in times] == [3, 3] and all(ms >= 0 for t in times for ms in t)


def test_each_timed_run_follows_an_untimed_run_of_the_same_call():
    """The lead-in: a timed run never meets the cores as another engine left them (by default)."""
    ran: list[str] = []
    interleaved_times([lambda: ran.append("a"), lambda: ran.append("b")], rounds=2, warmup=1)
    assert ran == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    # Only the run after the lead-in is timed: a call that is slow only on its first run of a turn reads fast.
    state = {"last": None}

    def cold_then_fast(name: str):
        def run():
            slow = state["last"] != name
            state["last"] = name
            time.sleep(0.05 if slow else 0.0)
        return run

    times = interleaved_times([cold_then_fast("a"), cold_then_fast("b")], rounds=2, warmup=0)
    assert all(ms < 45 for t in times for ms in t), times  # the 50 ms first runs were the lead-ins
    no_lead_in = interleaved_times([cold_then_fast("a"), cold_then_fast("b")], rounds=2, warmup=0, lead_in=0)
    assert all(max(t) >= 49 for t in no_lead_in)  # without them, timed runs meet the engine cold


def test_medians_of_real_artifacts_one_per_artifact(tmp_path):
    model = write_tiny_pair(tmp_path / "model")
    medians = interleaved_medians([model, model], rounds=3, warmup=1, threads=1)
    assert len(medians) == 2 and all(m > 0 for m in medians)
