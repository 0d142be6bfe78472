"""Fault injection, issue 30 family 4: exit codes and outputs that match the run.

Planted: a bench whose only row cannot run, a full disk under `predict` (ENOSPC on the second mask, on
predictions.json), a run whose inputs are all unreadable, a second run into a folder that holds a
first run's results (or a killed run's leftovers), and a folder another predict is writing into.
`bench` must exit non-zero when no row produced a number; `predict` must exit non-zero when an output
is missing and then leave nothing of the run; a `--out` folder must never mix two runs.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.atomic import write_bytes_atomic, write_json_atomic
from edgeseg.cli import main
from edgeseg.manifest import manifest_path_for
from edgeseg.runtime import predict as predict_module
from tests.fault_kit import tiny_manifest, write_tiny_pair
from tests.faults.campaign_kit import tree

LOCK = ".edgeseg-predict.lock"


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def predict(capsys, model: Path, source: Path, out: Path, *extra: str) -> tuple[int, str]:
    return run(capsys, "predict", "--model", str(model), "--source", str(source), "--out", str(out), "--no-progress",
               "--threads", "1", *extra)


# ---- bench: non-zero when nothing was measured ------------------------------------------------------

def bench(capsys, out: Path, data: Path, *artifacts: Path) -> tuple[int, str]:
    return run(capsys, "bench", "--artifacts", *map(str, artifacts), "--data", str(data), "--images", "2", "--runs",
               "2", "--warmup", "0", "--threads", "1", "--out", str(out), "--no-progress")


def unloadable_pair(folder: Path) -> Path:
    """An artifact ONNX Runtime cannot load, under a manifest whose sha256 matches it."""
    artifact = folder / "broken.onnx"
    folder.mkdir(parents=True)
    write_bytes_atomic(artifact, b"\x08\x07 not a protobuf graph")
    write_json_atomic(manifest_path_for(artifact), tiny_manifest(artifact))
    return manifest_path_for(artifact)


def test_bench_with_no_measured_row_exits_2_and_still_writes_the_report(tmp_path, synthetic_voc, capsys):
    out = tmp_path / "bench"
    code, err = bench(capsys, out, synthetic_voc, unloadable_pair(tmp_path / "m"))
    assert code == 2
    assert err == (f"edgeseg bench: error: no row produced a number (1 failed, 0 not run); {out}/report.md says why "
                   "for each")
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    assert (row["status"], row["stage"]) == ("failed", "run") and "ONNX Runtime cannot load it" in row["reason"]
    assert {"report.md", "results.csv", "results.json"} <= {p.name for p in out.iterdir()}


def test_bench_with_one_measured_row_beside_a_failed_one_exits_0(tmp_path, synthetic_voc, capsys):
    out = tmp_path / "bench"
    code, err = bench(capsys, out, synthetic_voc, unloadable_pair(tmp_path / "m"), write_tiny_pair(tmp_path / "ok"))
    assert code == 0, err
    statuses = [row["status"] for row in json.loads((out / "results.json").read_text())["rows"]]
    assert sorted(statuses) == ["failed", "ok"]


# ---- predict: non-zero when an output is missing, and then nothing is left --------------------------

def test_a_full_disk_on_the_second_mask_fails_the_run_and_leaves_nothing(tmp_path, model, images, capsys, monkeypatch):
    real, calls = predict_module.write_palette_png, []

    def filling_up(path, mask, palette):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, mask, palette)

    monkeypatch.setattr(predict_module, "write_palette_png", filling_up)
    out = tmp_path / "out"
    code, err = predict(capsys, model, images, out)
    assert code == 2
    assert err == (f"edgeseg predict: error: {out / 'masks' / '01.png'}: cannot be written (No space left on device); "
                   f"stopped at {images / '01.png'}")
    assert not out.exists()  # the first mask was this run's: removed with the folder the run made


def test_predictions_json_that_cannot_be_written_fails_the_run(tmp_path, model, images, capsys, monkeypatch):
    def full(path, payload):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(predict_module, "write_json_atomic", full)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code, err = predict(capsys, model, images, out)
    assert code == 2
    assert err == (f"edgeseg predict: error: {out / 'predictions.json'}: cannot be written (No space left on device)")
    assert tree(out) == ["notes.txt"]  # the user's folder and file stay; the run's masks go


def test_a_run_with_no_readable_input_leaves_no_folder(tmp_path, model, capsys):
    source = tmp_path / "bad"
    source.mkdir()
    (source / "a.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    code, err = predict(capsys, model, source, out)
    assert code == 2
    assert err.splitlines()[-1].startswith(f"edgeseg predict: error: {source}: nothing could be processed")
    assert not out.exists()


def test_an_empty_folder_the_user_made_is_kept_after_a_failed_run(tmp_path, model, capsys):
    source = tmp_path / "bad"
    source.mkdir()
    (source / "a.png").write_bytes(b"")
    out = tmp_path / "out"
    out.mkdir()
    assert predict(capsys, model, source, out)[0] == 2
    assert out.is_dir() and tree(out) == []


# ---- one run per --out ------------------------------------------------------------------------------

def test_a_second_run_into_a_finished_runs_folder_is_refused_and_the_first_kept(tmp_path, model, images, capsys):
    out = tmp_path / "out"
    assert predict(capsys, model, images, out)[0] == 0
    before = {name: (out / name).read_bytes() for name in tree(out) if (out / name).is_file()}
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "zz.png"), np.zeros((30, 30, 3), np.uint8))
    code, err = predict(capsys, model, other, out)
    assert code == 2
    assert err == (f"edgeseg predict: error: --out {out}: holds another run's results (predictions.json, masks/); "
                   "--force replaces them, or choose an empty folder")
    assert {name: (out / name).read_bytes() for name in tree(out) if (out / name).is_file()} == before


def test_force_replaces_the_previous_run_and_nothing_else(tmp_path, model, images, capsys):
    out = tmp_path / "out"
    assert predict(capsys, model, images, out, "--save", "mask,overlay")[0] == 0
    (out / "notes.txt").write_text("mine")
    other = tmp_path / "other"
    other.mkdir()
    cv2.imwrite(str(other / "zz.png"), np.zeros((30, 30, 3), np.uint8))
    code, err = predict(capsys, model, other, out, "--force")
    assert code == 0, err
    assert tree(out) == ["masks", "masks/zz.png", "notes.txt", "predictions.json"]  # no overlay/ of the first run
    assert [entry["name"] for entry in json.loads((out / "predictions.json").read_text())["inputs"]] == ["zz.png"]


def test_a_killed_runs_leftovers_are_refused_without_force(tmp_path, model, images, capsys):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "old.png").write_bytes(b"half")
    (out / LOCK).write_text("999999\n")  # its writer is gone: nobody holds the lock
    code, err = predict(capsys, model, images, out)
    assert code == 2
    assert err == (f"edgeseg predict: error: --out {out}: holds another run's results (masks/); --force replaces "
                   "them, or choose an empty folder")
    assert predict(capsys, model, images, out, "--force")[0] == 0
    assert tree(out) == ["masks", "masks/00.png", "masks/01.png", "masks/02.png", "predictions.json"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_folder_another_predict_is_writing_into_is_refused_naming_it(tmp_path, model, images, capsys, force):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "theirs.png").write_bytes(b"in progress")
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"4242\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a separate open file: conflicts as another process would
        code, err = predict(capsys, model, images, out, *force)
    finally:
        os.close(fd)
    assert code == 2
    assert err == (f"edgeseg predict: error: --out {out}: another predict (pid 4242) is writing into it; wait for it "
                   "to end or choose another folder")
    assert tree(out) == [LOCK, "masks", "masks/theirs.png"]


def test_out_that_is_a_file_is_one_line(tmp_path, model, images, capsys):
    out = tmp_path / "out"
    out.write_text("not a folder")
    code, err = predict(capsys, model, images, out)
    assert code == 2 and err == f"edgeseg predict: error: --out {out}: exists and is not a folder"
    assert out.read_text() == "not a folder"


def test_a_finished_run_leaves_no_lock_behind(tmp_path, model, images, capsys):
    out = tmp_path / "out"
    assert predict(capsys, model, images, out)[0] == 0
    assert tree(out) == ["masks", "masks/00.png", "masks/01.png", "masks/02.png", "predictions.json"]


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_a_masks_folder_no_predict_wrote_is_never_replaced(tmp_path, model, images, capsys, force):
    # An images/ + masks/ data set is a folder a user might well pass as --out: its ground truth stays.
    out = tmp_path / "dataset"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "00.png").write_bytes(b"ground truth")
    code, err = predict(capsys, model, images, out, *force)
    assert code == 2
    assert err == (f"edgeseg predict: error: --out {out}: already holds masks/, which no predict run wrote (no "
                   "predictions.json); choose another folder")
    assert tree(out) == ["masks", "masks/00.png"] and (out / "masks" / "00.png").read_bytes() == b"ground truth"
