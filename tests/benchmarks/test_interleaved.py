"""The one interleaving loop of every side-by-side timing (the module's CLI, peers.py, engines_interleaved.py):
each round runs every call once, in an order where every call follows every other equally often."""

from __future__ import annotations

import json
import time
from collections import Counter

from edgeseg.benchmarks.interleaved import interleaved_medians, interleaved_times, main, report, round_order
from tests.fault_kit import flip_byte, write_tiny_pair


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


def test_the_report_gives_medians_their_ratio_and_the_per_round_ratio():
    text = report(["fp32.onnx", "int8.onnx"], [[10.0, 20.0, 12.0], [5.0, 12.0, 9.0]], (1.0, 2.0, 3.0),
                  (1.5, 2.0, 3.0), "2 threads")
    # medians 12 and 9: ratio 0.75; per-round ratios 0.5, 0.6, 0.75: median 0.60
    assert text.splitlines() == [
        "    12.0 ms   1.00x  per-round  1.00x  fp32.onnx",
        "     9.0 ms   0.75x  per-round  0.60x  int8.onnx",
        "load average (1/5/15 min) before (1.0, 2.0, 3.0), after (1.5, 2.0, 3.0); 2 threads",
    ]


def test_the_command_prints_one_row_per_artifact(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    assert main([str(model), str(model), "--rounds", "2", "--threads", "1"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3 and all(row.endswith(model.name) for row in rows[:2])
    assert " 1.00x  per-round  1.00x  " in rows[0] and rows[2].endswith("2 rounds")


def test_the_command_answers_bad_input_in_one_line(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    damaged = write_tiny_pair(tmp_path / "damaged")
    flip_byte(damaged.parent / "tiny.onnx", 40)
    wrong_shape = write_tiny_pair(tmp_path / "shape")
    manifest = json.loads(wrong_shape.read_text())
    manifest["input"]["height"] = 32
    wrong_shape.write_text(json.dumps(manifest))
    prog = "python -m edgeseg.benchmarks.interleaved: error: "
    cases = [([str(tmp_path / "none.onnx")], f"{tmp_path / 'none.onnx'}: no such artifact"),
             ([str(model), str(damaged)], f"{damaged.parent / 'tiny.onnx'}: sha256 "),
             ([str(model), str(wrong_shape)], f"{wrong_shape}: manifest field input.height/width contradicts"),
             ([str(model), "--rounds", "0"], "--rounds 0: must be 1 or more"),
             ([str(model), "--threads", "0"], "--threads 0: must be 1 or more")]
    for argv, line in cases:
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.startswith(prog + line) and captured.err.count("\n") == 1, captured
