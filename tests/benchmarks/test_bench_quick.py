"""`edgeseg bench --quick` with no other argument, as on a fresh clone: its own data, its own folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.benchmarks.quick import QUICK_OUT, QUICK_SCENES, quick_scenes, quick_scenes_dir
from edgeseg.cli import main
from tests.constants import BENCH_RESULTS

pytestmark = pytest.mark.slow  # the quick bench converts and measures two rows


@pytest.fixture()
def fresh_clone(tmp_path, monkeypatch) -> Path:
    """An empty working folder and an empty cache: nothing converted, no scenes, no report."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGESEG_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_quick_alone_makes_its_data_and_writes_its_folder(fresh_clone, capsys):
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    report = fresh_clone / QUICK_OUT
    assert f"wrote {QUICK_OUT}/" in out
    results = json.loads((report / BENCH_RESULTS).read_text())
    (row,) = results["rows"]
    assert row["status"] == "ok", row.get("reason")
    assert row["target"] == "host-cpu" and row["precision"] == "fp32" and row["resolution"] == str(QUICK_SCENES["size"])
    scenes = quick_scenes_dir(fresh_clone / "cache")
    assert Path(results["datasets"]["data"]["path"]) == scenes.resolve()
    assert results["datasets"]["data"]["images"] == QUICK_SCENES["val"]
    assert row["artifact"]["from_cache"] is False
    made = (scenes / "labels.txt").stat().st_mtime_ns
    # The set is made once: asked again (the next --quick run), the cached folder comes back untouched.
    assert quick_scenes(fresh_clone / "cache", progress=False) == scenes
    assert (scenes / "labels.txt").stat().st_mtime_ns == made
