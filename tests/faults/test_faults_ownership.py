"""Fault injection, issue 30 family 4 (what was left): outputs that describe one run, for `demo`, `train` and
`make-scenes` as for `predict`.

- A second run into an output another live run is writing is refused in one line naming that run's process
  (edgeseg.run_lock), instead of both printing "wrote"; a killed run's lock blocks nobody.
- `demo --save-frames` writes into a staging folder and publishes on every way out, so DIR never mixes two
  runs' frames (a DIR holding PNGs is refused); `make-scenes` publishes its set by one rename, so a run killed
  or failing midway leaves no half set without labels.txt, and a rerun replaces an earlier set whole.

The other run is played by a lock held here on a second open file (flock conflicts as between processes) with
a pid written in it; kills are `crash_point`s in child processes (os._exit, as SIGKILL).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.atomic import CRASH_EXIT_CODE
from edgeseg.run_lock import lock_path_for
from edgeseg.scenes import SYNTHETIC_LABELS
from tests.fault_kit import tiny_onnx_bytes, write_tiny_pair
from tests.faults.campaign_kit import one_line_error, run_child, run_cli, tree

SCENES = ["--train", "3", "--val", "1", "--size", "32"]


@contextmanager
def another_run(output: Path, pid: int = 4242):
    """The lock of `output` held as another live run holds it."""
    lock = lock_path_for(output)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, f"{pid}\n".encode())
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield lock
    finally:
        os.close(fd)


def demo(capsys, model: Path, source: Path, *extra: object) -> tuple[int, str]:
    return run_cli(capsys, "demo", "--model", model, "--source", source, "--headless", "--threads", "1", *extra)


# -- demo -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, name, what", [("--save", "out.mp4", "file"), ("--save-frames", "frames", "folder")])
def test_a_second_demo_into_an_output_being_written_is_refused_naming_the_first(tmp_path, capsys, model, images,
                                                                                option, name, what):
    out = tmp_path / "outputs" / name
    with another_run(out) as lock:
        code, err = demo(capsys, model, images, option, out)
        assert lock.exists()  # theirs: not removed by the refused run
    assert code == 2
    assert one_line_error(err, "demo") == (f"{option} {out}: another demo (pid 4242) is writing it; wait for it to "
                                           f"end or choose another {what}")
    assert tree(tmp_path / "outputs") == [lock.name]


def test_frames_of_an_earlier_run_are_refused_not_mixed(tmp_path, capsys, model, images):
    frames = tmp_path / "frames"
    assert demo(capsys, model, images, "--save-frames", frames)[0] == 0
    before = {p.name: p.read_bytes() for p in frames.iterdir()}
    code, err = demo(capsys, model, images, "--max-frames", "1", "--save-frames", frames)
    assert code == 2
    assert one_line_error(err, "demo") == (f"--save-frames {frames}: already holds 3 PNG files (another run's "
                                           "frames?); choose a new or empty folder")
    assert {p.name: p.read_bytes() for p in frames.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "images", "model"]


@pytest.mark.parametrize("existing", [[], ["notes.txt"]])
def test_frames_join_a_folder_the_user_made(tmp_path, capsys, model, images, existing):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in existing:
        (frames / name).write_text("mine")
    code, err = demo(capsys, model, images, "--save-frames", frames)
    assert code == 0, err
    assert tree(frames) == sorted(["00.png", "01.png", "02.png", *existing])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "images", "model"]  # no lock, no staging


def test_a_demo_killed_while_writing_frames_leaves_no_frames_and_the_next_run_cleans_up(tmp_path, model, images,
                                                                                       capsys):
    frames, video = tmp_path / "out" / "frames", tmp_path / "out" / "demo.mp4"
    code, _ = run_child("demo", "--model", model, "--source", images, "--headless", "--threads", "1",
                        "--save-frames", frames, "--save", video, env={"EDGESEG_CRASH_AT": "demo:frame-written"})
    assert code == CRASH_EXIT_CODE
    left = tree(tmp_path / "out")
    assert not frames.exists() and not video.exists()  # nothing half-published
    assert any(name.startswith(".edgeseg-staging-") for name in left)
    code, err = demo(capsys, model, images, "--save-frames", frames, "--save", video)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["demo.mp4", "frames"]  # leftovers gone


def test_a_failed_demo_leaves_no_output_no_lock_and_no_folder_it_made(tmp_path, capsys, images):
    model = write_tiny_pair(tmp_path / "model", model=tiny_onnx_bytes(bias0=np.nan))
    out = tmp_path / "new" / "place"
    code, err = demo(capsys, model, images, "--save", out / "demo.mp4", "--save-frames", out / "frames")
    assert code == 2 and "non-finite values" in one_line_error(err, "demo")
    assert not (tmp_path / "new").exists()  # the folders it made for its outputs went with them


def test_a_demo_whose_model_fails_to_load_lets_its_outputs_go(tmp_path, capsys, images):
    model = write_tiny_pair(tmp_path / "model")
    (tmp_path / "model" / "tiny.onnx").write_bytes(b"changed after conversion")
    out = tmp_path / "place"
    out.mkdir()
    code, err = demo(capsys, model, images, "--save", out / "demo.mp4", "--save-frames", out / "frames")
    assert code == 2 and "does not match" in one_line_error(err, "demo")
    assert tree(out) == []
    assert demo(capsys, write_tiny_pair(tmp_path / "good"), images, "--save", out / "demo.mp4")[0] == 0


# -- train ----------------------------------------------------------------------------------------------

def test_a_second_train_into_a_checkpoint_being_written_is_refused_naming_the_first(tmp_path, capsys, synthetic_voc):
    out = tmp_path / "run" / "m.pt"
    out.parent.mkdir()
    with another_run(out, pid=31337) as lock:
        code, err = run_cli(capsys, "train", "--data", synthetic_voc, "--resolution", "64", "--init", "scratch",
                            "--out", out)
        assert lock.exists()
    assert code == 2
    assert one_line_error(err, "train") == (f"--out {out}: another train (pid 31337) is writing it; wait for it to end "
                                            "or choose another file")
    assert tree(out.parent) == [lock.name]


NOT_A_FILE = "exists and is not a regular file (a device, a pipe or a socket); edgeseg replaces only files it can " \
             "rewrite whole"


def test_train_refuses_to_replace_a_pipe_or_device_given_as_out(tmp_path, capsys, synthetic_voc):
    # Issue 30 campaign: `train --out /dev/full`, as root, renamed the checkpoint onto the device node (exit 0,
    # /dev/full gone). A pipe stands in for the device here (no root needed); both are refused before training.
    out = tmp_path / "p"
    os.mkfifo(out)
    code, err = run_cli(capsys, "train", "--data", synthetic_voc, "--resolution", "64", "--init", "scratch",
                        "--epochs", "1", "--out", out)
    assert code == 2 and one_line_error(err, "train") == f"{out}: {NOT_A_FILE}"
    assert tree(tmp_path) == ["p"] and stat.S_ISFIFO(out.lstat().st_mode)


def test_demo_refuses_to_replace_a_pipe_behind_its_save_name(tmp_path, capsys, model, images):
    os.mkfifo(tmp_path / "p")
    (tmp_path / "v.avi").symlink_to("p")
    code, err = demo(capsys, model, images, "--save", tmp_path / "v.avi")
    assert code == 2 and one_line_error(err, "demo") == f"{tmp_path / 'v.avi'}: {NOT_A_FILE}"
    assert stat.S_ISFIFO((tmp_path / "p").lstat().st_mode) and (tmp_path / "v.avi").is_symlink()


def test_a_killed_trains_lock_blocks_nobody(tmp_path):
    out = tmp_path / "m.pt"
    lock = lock_path_for(out)
    lock.write_text("999999\n")  # a dead run's: no process holds it
    from edgeseg.models.train_state import claim_out

    with claim_out(out):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists() and list(tmp_path.iterdir()) == []


# -- make-scenes ----------------------------------------------------------------------------------------

def scene_set(root: Path, train: int = 3, val: int = 1) -> list[str]:
    ids = [f"train_{i:05d}" for i in range(train)] + [f"val_{i:05d}" for i in range(val)]
    return sorted(["ImageSets", "ImageSets/Segmentation", "ImageSets/Segmentation/train.txt",
                   "ImageSets/Segmentation/val.txt", "JPEGImages", "SegmentationClass", "labels.txt",
                   *[f"JPEGImages/{i}.jpg" for i in ids], *[f"SegmentationClass/{i}.png" for i in ids]])


@pytest.mark.parametrize("crash", ["make-scenes:scene-written", "staged-folder:publish"])
def test_make_scenes_killed_midway_leaves_no_half_set(tmp_path, capsys, crash):
    out = tmp_path / "scenes"
    code, _ = run_child("make-scenes", "--out", out, *SCENES, env={"EDGESEG_CRASH_AT": crash})
    assert code == CRASH_EXIT_CODE
    assert not out.exists()
    code, err = run_cli(capsys, "make-scenes", "--out", out, *SCENES)
    assert code == 0, err
    assert tree(out) == scene_set(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]  # the killed run's staging and lock removed


def test_make_scenes_killed_while_replacing_an_earlier_set_leaves_no_half_set(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert run_cli(capsys, "make-scenes", "--out", out, *SCENES)[0] == 0
    code, _ = run_child("make-scenes", "--out", out, "--train", "1", "--val", "1", "--size", "32",
                        env={"EDGESEG_CRASH_AT": "staged-folder:retired"})
    assert code == CRASH_EXIT_CODE
    assert not out.exists() or tree(out) == scene_set(out)  # the earlier set whole, or none; never half
    assert run_cli(capsys, "make-scenes", "--out", out, "--train", "1", "--val", "1", "--size", "32")[0] == 0
    assert tree(out) == scene_set(out, 1, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scenes"]


def test_a_rerun_replaces_an_earlier_set_whole(tmp_path, capsys):
    out = tmp_path / "scenes"
    assert run_cli(capsys, "make-scenes", "--out", out, "--train", "5", "--val", "2", "--size", "32")[0] == 0
    assert run_cli(capsys, "make-scenes", "--out", out, *SCENES)[0] == 0
    assert tree(out) == scene_set(out)  # no scene of the larger earlier set left beside the new lists
    assert (out / "labels.txt").read_text().split() == list(SYNTHETIC_LABELS)


@pytest.mark.parametrize("content", ["notes.txt", "JPEGImages/extra.jpg:no", ".hidden"])
def test_make_scenes_refuses_a_folder_holding_anything_else(tmp_path, capsys, content):
    out = tmp_path / "scenes"
    name = content.split(":")[0]
    if content.endswith(":no"):  # inside an entry of the set: a set is replaced whole, entries and all
        (out / "JPEGImages").mkdir(parents=True)
        (out / name).write_text("x")
        assert run_cli(capsys, "make-scenes", "--out", out, *SCENES)[0] == 0
        assert tree(out) == scene_set(out)
        return
    out.mkdir()
    (out / name).write_text("mine")
    code, err = run_cli(capsys, "make-scenes", "--out", out, *SCENES)
    assert code == 2
    assert one_line_error(err, "make-scenes") == (f"{out}: holds {name}, which make-scenes did not write; choose a "
                                                  "new or empty folder")
    assert tree(out) == [name]


def test_a_second_make_scenes_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "scenes"
    with another_run(out, pid=777) as lock:
        code, err = run_cli(capsys, "make-scenes", "--out", out, *SCENES)
        assert lock.exists()
    assert code == 2
    assert one_line_error(err, "make-scenes") == (f"{out}: another make-scenes (pid 777) is writing it; wait for it to "
                                                  "end or choose another folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == [lock.name]


def test_a_full_disk_midway_publishes_nothing(tmp_path, capsys, monkeypatch):
    from edgeseg import scenes

    real_write = scenes._write
    written = []

    def filling_up(path: Path, data: bytes) -> None:
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        real_write(path, data)

    monkeypatch.setattr(scenes, "_write", filling_up)
    out = tmp_path / "scenes"
    code, err = run_cli(capsys, "make-scenes", "--out", out, *SCENES)
    assert code == 2
    assert one_line_error(err, "make-scenes") == (f"{out}: cannot write the scenes (No space left on device); nothing "
                                                  "was written there")
    assert list(tmp_path.iterdir()) == []


def test_make_scenes_onto_a_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "scenes"
    out.write_text("a file")
    code, err = run_cli(capsys, "make-scenes", "--out", out, *SCENES)
    assert code == 2 and one_line_error(err, "make-scenes") == f"{out}: exists and is not a folder"
    assert out.read_text() == "a file"


# -- a disk that fills up -------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 200 KiB tmpfs (needs root, as CI runs; skipped elsewhere), unmounted after the test."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True,
                             check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.decode().strip()[:80]})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_make_scenes_on_a_disk_that_fills_leaves_nothing(capsys, small_disk):
    code, err = run_cli(capsys, "make-scenes", "--out", small_disk / "s", "--size", "256", "--train", "40")
    assert code == 2
    assert one_line_error(err, "make-scenes") == (f"{small_disk / 's'}: cannot write the scenes (No space left on "
                                                  "device); nothing was written there")
    assert tree(small_disk) == []


def test_train_on_a_disk_that_fills_writes_no_checkpoint(capsys, small_disk, synthetic_voc):
    out = small_disk / "m.pt"
    code, err = run_cli(capsys, "train", "--data", synthetic_voc, "--model", "lraspp_mobilenet_v3_large",
                        "--resolution", "64", "--batch-size", "2", "--workers", "0", "--max-steps-per-epoch", "1",
                        "--epochs", "1", "--init", "scratch", "--no-bf16", "--out", out)
    assert code == 2
    message = one_line_error(err, "train")
    assert message.startswith(f"{out}.train-state: cannot write the training state (") and "a full disk?" in message
    assert tree(small_disk) == []


def test_demo_frames_on_a_disk_that_fills_are_one_line_and_whole_files(tmp_path, capsys, model, small_disk):
    source = tmp_path / "many"
    source.mkdir()
    for i in range(60):
        cv2.imwrite(str(source / f"{i:02d}.png"), np.random.default_rng(i).integers(0, 255, (96, 128, 3), np.uint8))
    frames = small_disk / "frames"
    code, err = demo(capsys, model, source, "--save-frames", frames)
    assert code == 2
    assert one_line_error(err, "demo").startswith(f"--save-frames {frames}: cannot write ")
    assert all(p.stat().st_size > 0 and cv2.imread(str(p)) is not None for p in frames.iterdir())
    assert sorted(p.name for p in small_disk.iterdir()) == ["frames"]  # no staging, no lock left
