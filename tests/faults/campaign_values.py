"""Fault campaign, issue 30 family 5: bad values are refused in one line before any work, never passed on to
library code (an `internal error` later) nor silently ignored: calibration settings, label files in every wrong
encoding and shape, learning rates, scene sizes, resolutions, demo, predict, train and bench options."""

from __future__ import annotations

from pathlib import Path

from tests.faults.campaign_checkpoints import converted_nothing
from tests.faults.campaign_harness import Case, Kit, Setup, absent, chain, copy

FAMILY = "5 values"
# A labels file that load_weights reads with a BOM in front must give the names without it.
BOM_LABELS = ("import sys; from pathlib import Path; from edgeseg.models.weights import load_weights; "
              "w = load_weights(sys.argv[1], arch='lraspp_mobilenet_v3_large', labels_file=Path('l.txt')); "
              "assert w.labels == ('a', 'b', 'c'), w.labels")


def labels_file(content: bytes | None) -> Setup:
    """./l.txt holding `content`, or a folder of that name for None."""
    def setup(w: Path) -> None:
        if content is None:
            (w / "l.txt").mkdir()
        else:
            (w / "l.txt").write_bytes(content)
    return setup


def replaced(rel: str, content: bytes) -> Setup:
    def setup(w: Path) -> None:
        (w / rel).write_bytes(content)
    return setup


def conversion_values(kit: Kit) -> list[Case]:
    int8 = ["convert", "--precision", "int8", "--calib", "synthetic:2", "--resolution", "64", "--out", "out"]
    found = [Case(FAMILY, f"--calib-percentile {value}", [*int8, "--calib-method", "percentile", "--calib-percentile",
                                                          value], timeout=300, check=converted_nothing)
             for value in ("nan", "inf", "-5", "0", "50", "100.5")]
    found += [Case(FAMILY, f"--calib-percentile with {method or 'default method'}",
                   [*int8, *method, "--calib-percentile", "99.9"], timeout=300, check=converted_nothing)
              for method in ([], ["--calib-method", "minmax"], ["--calib-method", "entropy"])]
    tv_convert = ["convert", "--weights", kit.a("tv.pth"), "--model", "lraspp_mobilenet_v3_large", "--resolution",
                  "64", "--verify-images", "1", "--labels", "l.txt", "--out", "out"]
    found += [Case(FAMILY, f"--labels {name}", tv_convert, setup=labels_file(content), timeout=300,
                   check=converted_nothing)
              for name, content in (("latin-1", "a\ncaf\xe9\nz\n".encode("latin-1")), ("empty", b""),
                                    ("folder", None), ("utf-16", "a\nb\nc\n".encode("utf-16")))]
    found.append(Case(FAMILY, "--labels missing", tv_convert, timeout=300, check=converted_nothing))
    found += [Case(FAMILY, f"--labels with {name}", ["convert", "--weights", weights, "--resolution", "64",
                                                     "--verify-images", "1", "--labels", "l.txt", "--out", "out"],
                   setup=labels_file(b"a\nb\nc\nd\ne\nf\ng\n"), timeout=300, check=converted_nothing)
              for name, weights in (("sample", "sample"), ("torchvision", "torchvision"),
                                    ("a checkpoint", kit.a("ckpt.pt")))]
    found.append(Case(FAMILY, "--labels with a BOM names the classes", [kit.a("tv.pth")], expect="ok",
                      setup=labels_file("\ufeffa\nb\nc\n".encode()), python=BOM_LABELS))
    found += [Case(FAMILY, f"convert --resolution {value}", ["convert", "--resolution", value, "--out", "out"],
                   timeout=60, check=converted_nothing) for value in ("0", "abc", "7", "99999", "64x0")]
    return found


def training_values(kit: Kit) -> list[Case]:
    train = ["train", "--data", "voc", "--resolution", "64", "--workers", "0", "--init", "scratch", "--out", "t/m.pt"]
    found = [Case(FAMILY, f"train {rel} {content[:6]!r}", train, timeout=60, check=absent("t"),
                  setup=chain(copy(kit.assets / "voc", "voc"), replaced(f"voc/{rel}", content)))
             for rel, content in (("labels.txt", "a\ncaf\xe9\n".encode("latin-1")), ("labels.txt", b"\n \n"),
                                  ("ImageSets/Segmentation/train.txt", b"\xff\xfe\x00t"))]
    found += [Case(FAMILY, f"train --lr {lr}", ["train", "--data", "nowhere", "--lr", lr, "--out", "t/m.pt"],
                   check=absent("t")) for lr in ("1e38", "1e4", "-1", "nan")]
    found += [Case(FAMILY, f"train {' '.join(argv)}", ["train", "--data", "nowhere", *argv, "--out", "t/m.pt"],
                   check=absent("t"))
              for argv in (["--resolution", "65"], ["--epochs", "-1"], ["--crop", "0"], ["--image-pool-window", "-3"])]
    return found


def other_values(kit: Kit) -> list[Case]:
    tiny, images = kit.a("tiny"), kit.a("images")
    demo = ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1"]
    found = [Case(FAMILY, f"make-scenes {' '.join(argv)}", ["make-scenes", "--out", "s", *argv], check=absent("s"),
                  timeout=60)
             for argv in (["--seed", "-1"], ["--size", "100000"], ["--size", "4097"], ["--size", "8"],
                          ["--train", "-1"], ["--train", "0", "--val", "0"])]
    found += [Case(FAMILY, f"demo {' '.join(argv)}", [*demo, *argv])
              for argv in (["--alpha", "2"], ["--alpha", "-1"], ["--max-frames", "-1"], ["--max-frames", "0"])]
    found.append(Case(FAMILY, "predict --classes bogus", ["predict", "--model", tiny, "--source", images, "--out", "o",
                                                          "--classes", "unicorn"], check=absent("o")))
    found += [Case(FAMILY, f"bench {' '.join(argv)}", ["bench", *argv, "--data", "nowhere", "--out", "b"],
                   check=absent("b")) for argv in (["--runs", "0"], ["--images", "-1"])]
    return found


def more_values(kit: Kit) -> list[Case]:
    """Every numeric option at its edges (NaN, Inf, negative, zero, huge, not a number), refused before work."""
    tiny, images = kit.a("tiny"), kit.a("images")
    predict = ["predict", "--model", tiny, "--source", images, "--out", "o", "--threads", "1"]
    demo = ["demo", "--model", tiny, "--source", images, "--headless", "--threads", "1"]
    train = ["train", "--data", kit.a("voc"), "--resolution", "64", "--workers", "0", "--init", "scratch",
             "--out", "t/m.pt"]
    convert = ["convert", "--resolution", "64", "--out", "out"]
    bench = ["bench", "--artifacts", tiny, "--data", kit.a("voc"), "--out", "b"]
    found = [Case(FAMILY, f"predict {' '.join(argv)}", [*predict, *argv], check=absent("o"))
             for argv in (["--alpha", "nan"], ["--alpha", "inf"], ["--first-frame-timeout", "-1"],
                          ["--first-frame-timeout", "nan"], ["--max-frames", "0"], ["--save", "bogus"],
                          ["--save", ""], ["--save", "mask,,overlay"], ["--classes", ""], ["--classes", "999"],
                          ["--classes", "-1"])]
    found += [Case(FAMILY, f"demo {' '.join(argv)}", [*demo, *argv])
              for argv in (["--input-rate", "0"], ["--input-rate", "nan"], ["--input-width", "-5"],
                           ["--input-height", "0"], ["--reconnect", "-1"], ["--first-frame-timeout", "nan"],
                           ["--first-frame-timeout", "inf"], ["--alpha", "nan"])]
    found += [Case(FAMILY, f"train {' '.join(argv)}", [*train, *argv], check=absent("t"), timeout=60)
              for argv in (["--batch-size", "0"], ["--batch-size", "-2"], ["--workers", "-1"],
                           ["--max-steps-per-epoch", "0"], ["--max-steps-per-epoch", "-3"], ["--scale-min", "0"],
                           ["--scale-min", "2", "--scale-max", "1"], ["--scale-max", "nan"],
                           ["--scale-max", "inf"], ["--lr", "inf"], ["--crop", "100000"], ["--seed", "-1"],
                           ["--train-split", "nosuch"], ["--val-split", "nosuch"], ["--epochs", "1e9"])]
    found += [Case(FAMILY, f"convert {' '.join(argv)}", [*convert, *argv], check=converted_nothing, timeout=60)
              for argv in (["--verify-images", "-3"], ["--precision", "int8", "--calib-images", "0"],
                           ["--precision", "int8", "--calib-images", "-5"], ["--precision", "int8", "--calib",
                                                                            "synthetic:0"],
                           ["--precision", "int8", "--calib", "synthetic:abc"], ["--target", "bogus"],
                           ["--precision", "fp8"], ["--name", "../x"], ["--name", ""], ["--name", "a/b"],
                           ["--verify-data", "nowhere"])]
    found += [Case(FAMILY, f"bench {' '.join(argv)}", [*bench, *argv], check=absent("b"))
              for argv in (["--runs", "-1"], ["--warmup", "-1"], ["--budget-ms", "nan"], ["--budget-ms", "-5"],
                           ["--images", "0"])]
    found += [Case(FAMILY, f"make-scenes {' '.join(argv)}", ["make-scenes", "--out", "s", "--size", "32", *argv],
                   check=absent("s"))
              for argv in (["--val", "-1"], ["--size", "abc"])]
    # A seed past 64 bits is still a seed (0 or more): the set is written, the same for the same seed.
    found.append(Case(FAMILY, "make-scenes --seed 10^20 writes a set", ["make-scenes", "--out", "s", "--size", "32",
                                                                        "--train", "2", "--val", "1", "--seed",
                                                                        "99999999999999999999"], expect="ok"))
    found.append(Case(FAMILY, "info on a missing path", ["info", "nowhere.onnx"]))
    return found


def cases(kit: Kit) -> list[Case]:
    return conversion_values(kit) + training_values(kit) + other_values(kit) + more_values(kit)
