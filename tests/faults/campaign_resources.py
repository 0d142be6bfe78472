"""Fault campaign, issue 30 family 3: resources are bounded. Threads at most the machine's cores (flag or
manifest), no input read without a bound or a timeout (a named pipe, a device, a 60 MB labels file, a symlink
loop), an image whose header claims 10^10 pixels skipped or refused, never decoded."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tests.faults.campaign_harness import Case, Kit, Setup, absent, chain, copy, fifo, no_half_set
from tests.faults.campaign_model_trust import edited_manifest

FAMILY = "3 resources"


def voc_with_fifo(kit: Kit, rel: str) -> Setup:
    return chain(copy(kit.assets / "voc", "voc"), fifo(f"voc/{rel}"))


def symlink_loop(w: Path) -> None:
    os.symlink("loop", w / "loop")


def pipes_and_devices(kit: Kit) -> list[Case]:
    tv = kit.a("tv.pth")
    train = ["train", "--data", "voc", "--resolution", "64", "--workers", "0", "--init", "scratch", "--out", "t/m.pt"]
    int8 = ["convert", "--precision", "int8", "--calib", "cal", "--out", "out"]
    predict = ["predict", "--model", kit.a("tiny"), "--out", "out", "--threads", "1", "--source"]
    return [
        Case(FAMILY, "convert --labels FIFO", ["convert", "--weights", tv, "--model", "lraspp_mobilenet_v3_large",
                                               "--labels", "l.txt", "--out", "out"], setup=fifo("l.txt"), timeout=30),
        Case(FAMILY, "convert --labels /dev/zero", ["convert", "--weights", tv, "--labels", "/dev/zero", "--out",
                                                    "out"], timeout=30),
        Case(FAMILY, "convert --labels 60 MB", ["convert", "--weights", tv, "--model", "lraspp_mobilenet_v3_large",
                                                "--labels", kit.a("big_labels.txt"), "--out", "out"], timeout=60),
        Case(FAMILY, "convert --weights FIFO", ["convert", "--weights", "w.pt", "--out", "out"], setup=fifo("w.pt"),
             timeout=30),
        Case(FAMILY, "convert --weights /dev/zero", ["convert", "--weights", "/dev/zero", "--out", "out"], timeout=30),
        Case(FAMILY, "convert --weights folder", ["convert", "--weights", "wd", "--out", "out"],
             setup=lambda w: (w / "wd").mkdir(), timeout=30),
        Case(FAMILY, "train labels.txt FIFO", train, setup=voc_with_fifo(kit, "labels.txt"), timeout=60,
             check=absent("t")),
        Case(FAMILY, "train split list FIFO", train, setup=voc_with_fifo(kit, "ImageSets/Segmentation/train.txt"),
             timeout=60, check=absent("t")),
        Case(FAMILY, "train image FIFO", train, setup=voc_with_fifo(kit, "JPEGImages/train_00000.jpg"), timeout=60,
             check=absent("t")),
        Case(FAMILY, "train mask FIFO", train, setup=voc_with_fifo(kit, "SegmentationClass/train_00001.png"),
             timeout=60, check=absent("t")),
        Case(FAMILY, "train huge-header image", train, timeout=60, check=absent("t"),
             setup=chain(copy(kit.assets / "voc", "voc"), copy(kit.assets / "huge.png",
                                                                "voc/SegmentationClass/train_00000.png"))),
        Case(FAMILY, "calib folder of FIFOs", int8, setup=chain(fifo("cal/a.jpg"), fifo("cal/b.png")), timeout=30),
        Case(FAMILY, "calib folder with a huge-header image only", int8, timeout=30,
             setup=copy(kit.assets / "huge.png", "cal/a.png")),
        Case(FAMILY, "predict source FIFO", [*predict, "s.png"], setup=fifo("s.png"), timeout=30, check=absent("out")),
        Case(FAMILY, "predict folder with a FIFO and an image", [*predict, "src"], expect="ok", timeout=30,
             setup=chain(fifo("src/a.png"), copy(kit.assets / "images/00.png", "src/b.png"))),
        Case(FAMILY, "predict folder with a huge-header image", [*predict, "src"], expect="ok",
             setup=chain(copy(kit.assets / "images", "src"), copy(kit.assets / "huge.png", "src/h.png"))),
        Case(FAMILY, "predict huge-header image alone", [*predict, kit.a("huge.png")], check=absent("out")),
        Case(FAMILY, "demo huge-header image", ["demo", "--model", kit.a("tiny"), "--source", kit.a("huge.png"),
                                                "--headless", "--threads", "1"]),
        Case(FAMILY, "demo source FIFO", ["demo", "--model", kit.a("tiny"), "--source", "s.mp4", "--headless",
                                          "--threads", "1", "--first-frame-timeout", "3"], setup=fifo("s.mp4"),
             timeout=40),
        Case(FAMILY, "predict --source /dev/zero", [*predict, "/dev/zero"], timeout=30, check=absent("out")),
        Case(FAMILY, "predict manifest FIFO", ["predict", "--model", "m/tiny.onnx", "--source", kit.a("images"),
                                               "--out", "out"],
             setup=chain(copy(kit.assets / "tiny", "m"), fifo("m/tiny.onnx.json")), timeout=30),
        Case(FAMILY, "info /dev/zero", ["info", "/dev/zero"], timeout=30),
        Case(FAMILY, "predict symlink-loop source", [*predict, "loop"], setup=symlink_loop, timeout=30),
        Case(FAMILY, "predict symlink-loop out", ["predict", "--model", kit.a("tiny"), "--source", kit.a("images"),
                                                  "--out", "loop"], setup=symlink_loop, timeout=30),
    ]


def threads_and_sizes(kit: Kit) -> list[Case]:
    found = []
    for command in ("predict", "demo"):
        extra = ["--out", "out"] if command == "predict" else ["--headless"]
        found += [Case(FAMILY, f"{command} --threads {threads}", [command, "--model", kit.a("tiny"), "--source",
                                                                   kit.a("images"), "--threads", threads, *extra],
                       timeout=60) for threads in ("100000", "0", "-1")]
        found.append(Case(FAMILY, f"{command} manifest threads 100000 is capped",
                          [command, "--model", "model", "--source", kit.a("images"), *extra], expect="ok", timeout=60,
                          setup=edited_manifest(kit.assets / "tiny", lambda m: m["runtime"].update(threads=100000))))
    found += [
        Case(FAMILY, "bench --threads 100000", ["bench", "--artifacts", kit.a("tiny"), "--threads", "100000", "--data",
                                                kit.a("voc"), "--out", "b"], timeout=60),
        Case(FAMILY, "make-scenes --size 100000", ["make-scenes", "--out", "s", "--size", "100000", "--train", "1",
                                                   "--val", "0"], check=absent("s"), timeout=60),
        Case(FAMILY, "make-scenes --train 10^9 killed", ["make-scenes", "--out", "s", "--size", "64", "--train",
                                                         "1000000000"],
             expect="killed", kill_after=6, check=no_half_set("s"),
             then=lambda w: ["make-scenes", "--out", "s", "--size", "32", "--train", "2", "--val", "1"]),
    ]
    return found


def image(name: str, pixels: Callable[[], object]) -> Setup:
    """An image written by OpenCV from the array `pixels()` gives (odd shapes, depths and channel counts)."""
    def setup(w: Path) -> None:
        import cv2

        (w / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(w / name), pixels())
    return setup


def array(shape: tuple[int, ...], dtype: str = "uint8") -> Callable[[], object]:
    def make() -> object:
        import numpy as np

        return np.full(shape, 100, dtype)
    return make


def odd_sources(kit: Kit) -> list[Case]:
    """Sources that are empty, not what their name says, unreachable, or images of unusual shape and depth."""
    predict = ["predict", "--model", kit.a("tiny"), "--out", "out", "--threads", "1", "--first-frame-timeout", "3",
               "--source"]
    demo = ["demo", "--model", kit.a("tiny"), "--headless", "--threads", "1", "--first-frame-timeout", "3",
            "--reconnect", "0", "--source"]
    refused = [
        ("an empty folder", "src", lambda w: (w / "src").mkdir()),
        ("a folder of text named .png", "src", lambda w: ((w / "src").mkdir(), (w / "src/a.png").write_text("no"))),
        ("an empty .mp4", "v.mp4", lambda w: (w / "v.mp4").write_bytes(b"")),
        ("a text file named .mp4", "v.mp4", lambda w: (w / "v.mp4").write_text("not a video\n" * 100)),
        ("a truncated PNG", "a.png", lambda w: (w / "a.png").write_bytes((kit.assets / "images/00.png")
                                                                          .read_bytes()[:60])),
        ("a missing file", "nowhere.png", None),
        ("a closed rtsp port", "rtsp://127.0.0.1:9/stream", None),
        ("a closed http port", "http://127.0.0.1:9/v.mp4", None),
        ("an unknown scheme", "gopher://127.0.0.1/x", None),
    ]
    found = [Case(FAMILY, f"predict refuses {name}", [*predict, source], setup=setup, timeout=60, check=absent("out"))
             for name, source, setup in refused]
    found += [Case(FAMILY, f"demo refuses {name}", [*demo, source], setup=setup, timeout=60)
              for name, source, setup in refused if name != "a folder of text named .png"]
    found += [Case(FAMILY, f"demo refuses {name}", [*demo, source], timeout=60)
              for name, source in (("a missing camera", "/dev/video99"), ("camera index 7", "7"),
                                   ("csi://0 here", "csi://0"), ("a gst pipeline that cannot start",
                                                                 "gst://videotestsrc ! fakesink"))]
    found += [Case(FAMILY, f"predict reads {name}", [*predict, "src"], expect="ok", timeout=60,
                   setup=image(f"src/{file}", pixels))
              for name, file, pixels in (("a 1x1 image", "a.png", array((1, 1, 3))),
                                         ("a 1x4000 image", "a.png", array((1, 4000, 3))),
                                         ("a grey PNG", "a.png", array((40, 50))),
                                         ("a 16-bit PNG", "a.png", array((40, 50, 3), "uint16")),
                                         ("an RGBA PNG", "a.png", array((40, 50, 4))))]
    # Not an 8-bit image: skipped and named, and with nothing else to read the run fails (a refusal is right).
    found.append(Case(FAMILY, "predict skips a float TIFF", [*predict, "src"], timeout=60, check=absent("out"),
                      setup=image("src/a.tiff", array((40, 50, 3), "float32"))))
    above = str(len(os.sched_getaffinity(0)) + 1)
    found += [Case(FAMILY, f"{cmd} --threads one above the cores", argv, timeout=60)
              for cmd, argv in (("predict", [*predict[:-1], "--threads", above, "--source", kit.a("images")]),
                                ("bench", ["bench", "--artifacts", kit.a("tiny"), "--threads", above, "--data",
                                           kit.a("voc"), "--out", "b"]))]
    return found


def cases(kit: Kit) -> list[Case]:
    return pipes_and_devices(kit) + threads_and_sizes(kit) + odd_sources(kit)

