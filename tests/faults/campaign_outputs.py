"""Fault campaign, issue 30 family 4: exit codes and outputs that match the run. A full disk under each writer
leaves nothing (or only whole files) and exits non-zero; kill -9 (by signal after a while, or at a named moment
through $EDGESEG_CRASH_AT) leaves no half set and a rerun into the same output succeeds; two runs into one output
at once: one writes, the other is refused naming it; an output holding another run's results is refused."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.faults.campaign_checkpoints import flipped, train_argv
from tests.faults.campaign_harness import (
    Case,
    Check,
    Kit,
    Setup,
    absent,
    chain,
    copy,
    count_in,
    empty,
    fifo,
    no_half_set,
    only,
    tmpfs,
    tree,
)

FAMILY = "4 outputs"
CONVERTED = {"sample-host-cpu-fp32-64.onnx", "sample-host-cpu-fp32-64.onnx.json"}


def whole_frames(folder: str) -> Check:
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        frames = list((w / folder).iterdir()) if (w / folder).is_dir() else []
        return "empty frame files" if any(p.stat().st_size == 0 for p in frames) else None
    return check


def no_partial_frames(w: Path, code: int, err: str, out: str) -> str | None:
    """The killed demo's frames folder is whole (all 1,500) or absent."""
    frames = w / "o/f"
    return "a partial frames folder" if frames.exists() and len(list(frames.iterdir())) != 1500 else None


def full_disk(kit: Kit) -> list[Case]:
    tiny, many = kit.a("tiny"), kit.a("many")
    demo = ["demo", "--model", tiny, "--source", many, "--headless", "--threads", "1"]
    return [
        Case(FAMILY, "make-scenes on a full disk", ["make-scenes", "--out", "d/s", "--size", "256", "--train", "40",
                                                    "--val", "2"], setup=tmpfs("d"), check=empty("d")),
        Case(FAMILY, "predict on a full disk", ["predict", "--model", tiny, "--source", many, "--out", "d/o",
                                                "--threads", "1", "--save", "mask,overlay"],
             setup=tmpfs("d"), check=empty("d"), timeout=300),
        Case(FAMILY, "demo --save on a full disk", [*demo, "--save", "d/v.avi"], setup=tmpfs("d"), check=empty("d"),
             timeout=300),
        Case(FAMILY, "demo --save-frames on a full disk", [*demo, "--save-frames", "d/f"], setup=tmpfs("d"),
             check=whole_frames("d/f"), timeout=300),
        Case(FAMILY, "train on a full disk", [*train_argv(kit), "--epochs", "1", "--out", "d/m.pt"],
             setup=tmpfs("d", "100k"), check=empty("d"), timeout=300),
        Case(FAMILY, "convert on a full disk", ["convert", "--resolution", "64", "--verify-images", "1", "--out", "d"],
             setup=tmpfs("d", "1m"), check=empty("d"), timeout=300),
    ]


def killed(kit: Kit) -> list[Case]:
    tiny, many, images = kit.a("tiny"), kit.a("many"), kit.a("images")
    scenes = ["make-scenes", "--out", "s", "--size", "32", "--train", "2", "--val", "1"]
    train = [*train_argv(kit), "--epochs", "3", "--out", "t/m.pt"]
    convert = ["convert", "--resolution", "64", "--verify-images", "1", "--out", "o"]
    found = [
        Case(FAMILY, "make-scenes kill -9 then rerun", ["make-scenes", "--out", "s", "--size", "128", "--train", "400"],
             expect="killed", kill_after=5, check=no_half_set("s"), then=lambda w: scenes,
             then_check=only(".", {"s"})),
        Case(FAMILY, "demo kill -9 then rerun", ["demo", "--model", tiny, "--source", many, "--headless", "--threads",
                                                 "1", "--save", "o/v.avi", "--save-frames", "o/f"],
             expect="killed", kill_after=3, check=no_partial_frames, then_check=only("o", {"v.avi", "f", "f2"}),
             # Into a new frames folder: o/f may hold the killed run's whole 1,500 frames, which a rerun must
             # refuse to mix with its own (that refusal is its own case below).
             then=lambda w: ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1", "--save",
                             "o/v.avi", "--save-frames", "o/f2"]),
        Case(FAMILY, "train kill -9 then resume", train, expect="killed", kill_after=12,
             then_check=only("t", {"m.pt", "m.pt.train-state"}), timeout=300,
             then=lambda w: [*train, *(["--resume"] if (w / "t/m.pt.train-state").exists() else [])]),
        Case(FAMILY, "predict kill -9 then rerun --force", ["predict", "--model", tiny, "--source", many, "--out", "o",
                                                            "--threads", "1"],
             expect="killed", kill_after=5, then_check=only("o", {"masks", "predictions.json"}),
             then=lambda w: ["predict", "--model", tiny, "--source", images, "--out", "o", "--force"]),
        Case(FAMILY, "convert kill -9 then rerun", convert, expect="killed", kill_after=15, then=lambda w: convert,
             then_check=only("o", CONVERTED), timeout=400),
    ]
    points = (  # (moment, command, what the kill may leave, what the rerun leaves)
        ("staged-folder:publish", scenes, no_half_set("s"), only(".", {"s"})),
        ("make-scenes:scene-written", scenes, no_half_set("s"), only(".", {"s"})),
        ("demo:frame-written", ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1",
                                "--save-frames", "f", "--save", "v.avi"], absent("f"), only(".", {"f", "v.avi"})),
        ("train:epoch-saved", [*train_argv(kit), "--epochs", "2", "--out", "t/m.pt"], absent("t/m.pt"),
         only("t", {"m.pt", "m.pt.train-state"})),
    )
    # The rerun runs without $EDGESEG_CRASH_AT (Case.env is for the first run only), into the same output.
    found += [Case(FAMILY, f"kill at {point}", argv, expect="killed", env={"EDGESEG_CRASH_AT": point}, check=check,
                   then=lambda w, argv=argv: argv, then_check=then_check, timeout=300)
              for point, argv, check, then_check in points]
    found.append(Case(FAMILY, "make-scenes killed while replacing", [*scenes[:-2]], expect="killed",
                      env={"EDGESEG_CRASH_AT": "staged-folder:retired"},
                      setup=lambda w: kit.edgeseg(["make-scenes", "--out", w / "s", "--size", "32", "--train", "3"]),
                      check=no_half_set("s"), then=lambda w: scenes, then_check=only(".", {"s"})))
    return found


def concurrent(kit: Kit) -> list[Case]:
    tiny, many = kit.a("tiny"), kit.a("many")
    demo = ["demo", "--model", tiny, "--source", many, "--headless", "--threads", "1"]
    return [
        Case(FAMILY, "two make-scenes at once", ["make-scenes", "--out", "s", "--size", "64", "--train", "60", "--val",
                                                 "1"], concurrent=True, check=no_half_set("s")),
        Case(FAMILY, "two demos --save at once", [*demo, "--save", "v.avi", "--max-frames", "600"], concurrent=True,
             timeout=300),
        Case(FAMILY, "two demos --save-frames at once", [*demo, "--save-frames", "f", "--max-frames", "400"],
             concurrent=True, timeout=300, check=count_in("f", 400)),
        Case(FAMILY, "two trains at once", [*train_argv(kit), "--epochs", "2", "--out", "t/m.pt"], concurrent=True,
             timeout=400),
        Case(FAMILY, "two predicts at once", ["predict", "--model", tiny, "--source", many, "--out", "o", "--threads",
                                              "1"], concurrent=True, timeout=300),
    ]


def earlier_runs(kit: Kit) -> list[Case]:
    tiny, images = kit.a("tiny"), kit.a("images")
    demo = ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1"]
    predict = ["predict", "--model", tiny, "--source", images, "--out", "o"]
    return [
        Case(FAMILY, "make-scenes rerun replaces the earlier set", ["make-scenes", "--out", "s", "--size", "32",
                                                                    "--train", "2", "--val", "1"], expect="ok",
             setup=lambda w: kit.edgeseg(["make-scenes", "--out", w / "s", "--size", "32", "--train", "6", "--val",
                                          "1"]),
             check=count_in("s/JPEGImages", 3)),
        Case(FAMILY, "make-scenes into a foreign folder", ["make-scenes", "--out", "s", "--size", "32", "--train", "2"],
             setup=lambda w: ((w / "s").mkdir(), (w / "s/notes.txt").write_text("mine")),
             check=lambda w, *_: None if tree(w / "s") == ["notes.txt"] else f"s holds {tree(w / 's')}"),
        Case(FAMILY, "demo --save-frames into an earlier run's frames", [*demo, "--save-frames", "f"],
             setup=lambda w: kit.edgeseg([*demo[:4], kit.a("many"), *demo[5:], "--max-frames", "5", "--save-frames",
                                          w / "f"]),
             check=count_in("f", 5)),
        Case(FAMILY, "demo --save-frames joins a user's folder", [*demo, "--save-frames", "f"], expect="ok",
             setup=lambda w: ((w / "f").mkdir(), (w / "f/notes.txt").write_text("x")),
             check=lambda w, *_: None if tree(w / "f") == ["00.png", "01.png", "02.png", "notes.txt"] else
             str(tree(w / "f"))),
        Case(FAMILY, "predict into an earlier run without --force", predict,
             setup=lambda w: kit.edgeseg([*predict[:-1], w / "o"])),
        Case(FAMILY, "failed demo leaves no folders", ["demo", "--model", kit.a("nan"), *demo[3:], "--save",
                                                      "n/p/v.avi", "--save-frames", "n/p/f"], check=absent("n")),
        Case(FAMILY, "failed train leaves no folder", ["train", "--data", kit.a("voc"), "--init", "w.pt",
                                                      "--batch-size", "2", "--max-steps-per-epoch", "1", "--epochs",
                                                      "1", "--out", "n/p/m.pt"],
             setup=flipped(kit.assets / "ckpt.pt", -1), check=absent("n")),
    ]


def file_in_the_way(name: str) -> Setup:
    def setup(w: Path) -> None:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).write_text("mine\n")
    return setup


def untouched(name: str) -> Check:
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        return None if (w / name).is_file() and (w / name).read_text() == "mine\n" else f"{name} was changed"
    return check


def device_node(name: str) -> Setup:
    """A character device like /dev/full (1, 7: every write fails with ENOSPC), made here (needs root)."""
    def setup(w: Path) -> None:
        os.mknod(w / name, 0o666 | stat.S_IFCHR, os.makedev(1, 7))
    return setup


def still_a_device(name: str) -> Check:
    def check(w: Path, code: int, err: str, out: str) -> str | None:
        return None if stat.S_ISCHR((w / name).lstat().st_mode) else f"{name} was replaced by a file"
    return check


def wrong_places(kit: Kit) -> list[Case]:
    """Outputs named where a file (or folder) is in the way, or that name no writable thing."""
    tiny, images = kit.a("tiny"), kit.a("images")
    demo = ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1"]
    in_the_way = [
        ("predict --out", ["predict", "--model", tiny, "--source", images, "--out", "x"], "x"),
        ("make-scenes --out", ["make-scenes", "--out", "x", "--size", "32", "--train", "2"], "x"),
        ("convert --out", ["convert", "--resolution", "64", "--verify-images", "1", "--out", "x"], "x"),
        ("bench --out", ["bench", "--artifacts", tiny, "--data", kit.a("voc"), "--images", "2", "--runs", "1",
                         "--out", "x"], "x"),
        ("demo --save-frames", [*demo, "--save-frames", "x"], "x"),
        ("predict --out under", ["predict", "--model", tiny, "--source", images, "--out", "x/o"], "x"),
        ("train --out under", [*train_argv(kit), "--epochs", "1", "--out", "x/m.pt"], "x"),
        ("demo --save under", [*demo, "--save", "x/v.avi"], "x"),
    ]
    found = [Case(FAMILY, f"{name} a file", argv, setup=file_in_the_way(blocker), check=untouched(blocker),
                  timeout=300) for name, argv, blocker in in_the_way]
    found += [
        Case(FAMILY, "demo --save .txt", [*demo, "--save", "v.txt"], check=absent("v.txt")),
        Case(FAMILY, "demo --save a folder", [*demo, "--save", "d"], setup=lambda w: (w / "d").mkdir(),
             check=absent("d")),
        # A copy of /dev/full's node in the work folder (never the real one: a rename onto it replaced it with a
        # checkpoint, as root), given directly and through a symlink with a video suffix.
        Case(FAMILY, "train --out a device node", [*train_argv(kit), "--epochs", "1", "--out", "full"],
             setup=device_node("full"), check=still_a_device("full"), timeout=300),
        Case(FAMILY, "demo --save a symlink to a device node", [*demo, "--save", "v.avi"],
             setup=chain(device_node("full"), lambda w: (w / "v.avi").symlink_to("full")),
             check=still_a_device("full")),
        Case(FAMILY, "train --out a named pipe", [*train_argv(kit), "--epochs", "1", "--out", "p"], setup=fifo("p"),
             check=lambda w, *_: None if stat.S_ISFIFO((w / "p").lstat().st_mode) else "p is no longer a pipe",
             timeout=300),
        Case(FAMILY, "predict --force keeps a user's file", ["predict", "--model", tiny, "--source", images, "--out",
                                                             "o", "--force"], expect="ok",
             setup=chain(lambda w: kit.edgeseg(["predict", "--model", tiny, "--source", images, "--out", w / "o"]),
                         file_in_the_way("o/notes.txt")), check=untouched("o/notes.txt")),
        Case(FAMILY, "predict --out inside its --source", ["predict", "--model", tiny, "--source", "src", "--out",
                                                           "src/pred"], expect="ok",
             setup=copy(kit.assets / "images", "src"), check=count_in("src/pred/masks", 3)),
    ]
    return found


def cases(kit: Kit) -> list[Case]:
    return full_disk(kit) + killed(kit) + concurrent(kit) + earlier_runs(kit) + wrong_places(kit)
