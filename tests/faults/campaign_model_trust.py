"""Fault campaign, issue 30 family 1: the runtime does not believe whatever the model (or its manifest) says.
A manifest whose sha256 matches but whose fields contradict the artifact is refused by predict, demo and the bench
and shown as a disagreement by `info`; NaN output and ids past the labels stop a run; a corrupt artifact whose
manifest matches is refused in one line."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.faults.campaign_harness import Case, Kit, Setup, absent, copy, stdout_has

FAMILY = "1 model/manifest trust"
Edit = Callable[[dict], object]


def section(name: str, **values: object) -> Edit:
    return lambda manifest: (manifest[name] if name else manifest).update(values)


def classes(count: int) -> Edit:
    return lambda manifest: manifest["model"].update(num_classes=count, labels=[f"c{i}" for i in range(count)])


# Fields the artifact's tensors contradict, and fields only its metadata_props contradict.
TENSOR_FIELDS: dict[str, Edit] = {
    "layout": section("input", layout="NHWC"), "dtype-u8": section("input", dtype="uint8"),
    "dtype-i8": section("input", dtype="int8"), "size": section("input", height=32, width=32),
    "height": section("input", height=128), "out-layout": section("output", layout="NHWC"),
    "out-mask": section("output", kind="mask", layout="NHW"), "8-classes": classes(8), "2-classes": classes(2),
    "out-f16": section("output", dtype="float16"), "out-u8": section("output", dtype="uint8")}
METADATA_FIELDS: dict[str, Edit] = {
    "bgr": section("input", color_order="BGR"), "in-model": section("input", normalization="in_model"),
    "mean": lambda manifest: manifest["input"]["normalization"].update(mean=[0.5, 0.5, 0.5]),
    "labels": lambda manifest: manifest["model"].update(labels=list(reversed(manifest["model"]["labels"]))),
    "precision": section("", precision="fp16"),
    "arch": lambda manifest: manifest["model"].update(architecture="deeplabv3_resnet50")}


def edited_manifest(source: Path, edit: Edit) -> Setup:
    """`source`'s pair copied to ./model with `edit` applied to the manifest (its sha256 still matches)."""
    def setup(w: Path) -> None:
        shutil.copytree(source, w / "model")
        manifest = next((w / "model").glob("*.json"))
        fields = json.loads(manifest.read_text())
        edit(fields)
        manifest.write_text(json.dumps(fields))
    return setup


def corrupt_artifact(source: Path, content: bytes) -> Setup:
    """The tiny pair with the artifact replaced by `content` and the manifest's sha256 updated to match it."""
    def setup(w: Path) -> None:
        shutil.copytree(source, w / "model")
        (w / "model/tiny.onnx").write_bytes(content)
        manifest = w / "model/tiny.onnx.json"
        fields = json.loads(manifest.read_text())
        fields["artifact_sha256"] = hashlib.sha256(content).hexdigest()
        manifest.write_text(json.dumps(fields))
    return setup


# Manifests wrong in themselves (whatever the artifact says): each must be refused where it is read.
BAD_MANIFESTS: dict[str, Edit] = {
    "std 0": lambda m: m["input"]["normalization"].update(std=[0.0, 0.0, 0.0]),
    "mean NaN": lambda m: m["input"]["normalization"].update(mean=[float("nan")] * 3),
    "scale Inf": lambda m: m["input"]["normalization"].update(scale=float("inf")),
    "2 means": lambda m: m["input"]["normalization"].update(mean=[0.5, 0.5]),
    "0 classes": classes(0), "10^9 classes": section("model", num_classes=10**9),
    "3 labels for 7 classes": lambda m: m["model"].update(labels=["a", "b", "c"]),
    "height 10^12": section("input", height=10**12), "height -64": section("input", height=-64),
    "height text": section("input", height="64"), "dtype complex": section("input", dtype="complex128"),
    "artifact ../": section("", artifact="../tiny.onnx"), "format 999": section("", format_version=999),
    "no input": lambda m: m.pop("input"), "labels a string": lambda m: m["model"].update(labels="abcdefg"),
    "runtime threads -4": lambda m: m["runtime"].update(threads=-4),
    "colour order GRB": section("input", color_order="GRB"), "resize bogus": section("input", resize="zoom"),
    "layout NCWH": section("input", layout="NCWH"),
    "quantization scale 0": section("input", quantization={"scale": 0.0, "zero_point": 0}),
    "quantization scale NaN": section("input", quantization={"scale": float("nan"), "zero_point": 0}),
    "quantization zero point text": section("input", quantization={"scale": 0.02, "zero_point": "0"}),
}


def raw_manifest(source: Path, text: bytes) -> Setup:
    """`source`'s pair copied to ./model with the manifest's bytes replaced by `text`."""
    def setup(w: Path) -> None:
        shutil.copytree(source, w / "model")
        next((w / "model").glob("*.json")).write_bytes(text)
    return setup


def bad_manifests(kit: Kit, predict: list[str]) -> list[Case]:
    props = kit.assets / "tiny"  # no metadata_props: the manifest's own checks, not a disagreement, must refuse
    found = [Case(FAMILY, f"predict refuses a manifest with {name}", predict, setup=edited_manifest(props, edit),
                  check=absent("out")) for name, edit in BAD_MANIFESTS.items()]
    found += [Case(FAMILY, f"info refuses a manifest with {name}", ["info", "model"],
                   setup=edited_manifest(props, BAD_MANIFESTS[name]))
              for name in ("std 0", "0 classes", "height -64", "no input")]
    found += [Case(FAMILY, f"predict refuses a manifest that is {name}", predict, setup=raw_manifest(props, text),
                   check=absent("out"))
              for name, text in (("empty", b""), ("a JSON list", b"[]"), ("truncated", b'{"format_version": 1, "ar'),
                                 ("not UTF-8", b"\xff\xfe{}"), ("JSON null", b"null"))]
    found += [
        Case(FAMILY, "demo stops on ids past labels", ["demo", "--model", kit.a("ids"), "--source", kit.a("images"),
                                                       "--headless", "--threads", "1", "--save-frames", "f"],
             check=absent("f")),
        Case(FAMILY, "predict --save probs stops on NaN output", [*predict, "--save", "probs,overlay"],
             setup=copy(kit.assets / "nan", "model"), check=absent("out")),
        Case(FAMILY, "bench --artifacts of a NaN model measures no row", ["bench", "--artifacts", kit.a("nan"),
                                                                          "--data", kit.a("voc"), "--images", "2",
                                                                          "--runs", "1", "--out", "b"]),
    ]
    return found


def cases(kit: Kit) -> list[Case]:
    props = kit.assets / "tinyprops"
    predict = ["predict", "--model", "model", "--source", kit.a("images"), "--out", "out", "--threads", "1",
               "--no-progress"]
    demo = ["demo", "--model", "model", "--source", kit.a("images"), "--headless", "--threads", "1"]
    found = [Case(FAMILY, f"predict refuses manifest {name}", predict, setup=edited_manifest(props, edit),
                  check=absent("out")) for name, edit in {**TENSOR_FIELDS, **METADATA_FIELDS}.items()]
    found += [Case(FAMILY, f"info shows manifest {name}", ["info", "model"], expect="ok",
                   setup=edited_manifest(props, edit),
                   check=stdout_has("DISAGREE", absent_text=("agrees with the manifest", "(as the manifest says)")))
              for name, edit in TENSOR_FIELDS.items()]
    found += [Case(FAMILY, f"info shows manifest {name}", ["info", "model"], expect="ok",
                   setup=edited_manifest(props, edit),
                   check=stdout_has("DISAGREES with the manifest on", absent_text=("agrees with the manifest",)))
              for name, edit in METADATA_FIELDS.items()]
    bench = ["bench", "--artifacts", "model", "--data", kit.a("voc"), "--images", "2", "--runs", "1", "--out", "b"]
    found += [
        Case(FAMILY, "demo refuses manifest layout", [*demo, "--save", "d.mp4"],
             setup=edited_manifest(props, TENSOR_FIELDS["layout"]), check=absent("d.mp4")),
        Case(FAMILY, "demo refuses manifest BGR", [*demo, "--save-frames", "f"],
             setup=edited_manifest(props, METADATA_FIELDS["bgr"]), check=absent("f")),
        Case(FAMILY, "demo refuses manifest classes", demo, setup=edited_manifest(props, classes(9))),
        Case(FAMILY, "bench row refuses manifest layout", bench, setup=edited_manifest(props, TENSOR_FIELDS["layout"])),
        Case(FAMILY, "predict stops on NaN output", predict, setup=copy(kit.assets / "nan", "model"),
             check=absent("out")),
        Case(FAMILY, "demo stops on NaN output", [*demo, "--save", "d.mp4"], setup=copy(kit.assets / "nan", "model"),
             check=absent("d.mp4")),
        Case(FAMILY, "predict stops on ids past labels", predict, setup=copy(kit.assets / "ids", "model"),
             check=absent("out")),
        Case(FAMILY, "honest pair runs", predict, expect="ok", setup=copy(props, "model")),
        Case(FAMILY, "info on honest pair agrees", ["info", "model"], expect="ok", setup=copy(props, "model"),
             check=stdout_has("agrees with the manifest")),
    ]
    for i, content in enumerate([b"", b"garbage", bytes(range(256)) * 8]):
        found.append(Case(FAMILY, f"info on corrupt onnx {i}", ["info", "model"],
                          setup=corrupt_artifact(kit.assets / "tiny", content)))
    found += [
        Case(FAMILY, "predict on corrupt onnx", predict, setup=corrupt_artifact(kit.assets / "tiny", b"garbage"),
             check=absent("out")),
        Case(FAMILY, "demo on corrupt onnx", demo, setup=corrupt_artifact(kit.assets / "tiny", b"garbage")),
    ]
    return found + bad_manifests(kit, predict)
