"""Fault injection, issue 30 family 1 (class 2 of the first campaign):
an artifact is checked before use, a manifest against its schema.

Planted: flipped artifact bytes (info, demo, open_backend, the bench cache), and a manifest with a
wrong field of each kind. Each is one line naming the file, exit 2 at the command line, and nothing runs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeseg import manifest as manifest_module
from edgeseg.cli import main
from edgeseg.errors import ManifestError
from edgeseg.manifest import load_manifest, sha256_file
from edgeseg.runtime.backend import open_backend
from tests.fault_kit import flip_byte, write_grey_frames, write_tiny_pair


@pytest.fixture
def copy(tmp_path) -> Path:
    """A tiny real ONNX model and its honest manifest (the manifest's path), for a test to damage."""
    return write_tiny_pair(tmp_path)


def frames_folder(tmp_path: Path) -> Path:
    return write_grey_frames(tmp_path / "frames", 2, name="{}.png")


def cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err.strip()


def test_intact_pair_loads_and_runs(copy):
    with open_backend(copy) as backend:
        out = backend.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert out.shape == (1, 7, 64, 64) and np.isfinite(out).all()


def test_flipped_artifact_byte_is_refused_by_load_and_open_backend(copy):
    manifest = load_manifest(copy)
    flip_byte(manifest.artifact_path, manifest.artifact_path.stat().st_size // 2)
    with pytest.raises(ManifestError) as info:
        load_manifest(copy)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{manifest.artifact_path}: sha256 ")
    assert f"does not match {copy.name}" in message
    with pytest.raises(ManifestError, match="does not match"):
        open_backend(manifest)  # a Manifest read before the damage is checked again on use


@pytest.mark.parametrize("command", ["info", "demo"])
def test_flipped_artifact_byte_is_one_line_and_exit_2_at_the_command_line(copy, tmp_path, capsys, command):
    artifact = load_manifest(copy).artifact_path
    flip_byte(artifact, 100)
    args = ["info", str(copy)] if command == "info" else [
        "demo", "--model", str(copy), "--source", str(frames_folder(tmp_path)), "--headless",
        "--save", str(tmp_path / "out.mp4")]
    code, err = cli(args, capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edgeseg {command}: error: {artifact}: sha256 ") and "does not match" in err
    assert not list(tmp_path.glob("*out.mp4*"))  # nothing written from a model that was not run


def test_hash_is_cached_per_path_size_and_mtime(copy, monkeypatch):
    calls = []
    real = manifest_module.sha256_file
    monkeypatch.setattr(manifest_module, "sha256_file", lambda p: calls.append(p) or real(p))
    artifact = copy.with_name(json.loads(copy.read_text())["artifact"])
    os.utime(artifact, ns=(0, 123_456_789_000))  # a key this process has not seen
    load_manifest(copy)
    load_manifest(copy)
    assert len(calls) == 1
    os.utime(artifact, ns=(0, 123_456_790_000))
    load_manifest(copy)
    assert len(calls) == 2


def test_bench_cache_treats_a_mismatched_pair_as_absent(copy):
    from edgeseg.benchmarks.cache import CACHE_KEY_FILE, cached_manifest

    (copy.parent / CACHE_KEY_FILE).write_text("{}")
    assert cached_manifest(copy.parent) is not None
    flip_byte(load_manifest(copy).artifact_path, 50)
    assert cached_manifest(copy.parent) is None  # converted again by the bench, never measured


def _set(path: str, value):
    def edit(data: dict) -> None:
        *parents, key = path.split(".")
        part = data
        for p in parents:
            part = part[p]
        if value is DELETE:
            del part[key]
        else:
            part[key] = value
    return edit


DELETE = object()
BAD_FIELDS = [
    ("model.labels", DELETE, "manifest lacks model.labels"),
    ("model.labels", ["a", "b"], "manifest has 2 labels for 7 classes"),
    ("model.labels", "background", "manifest field model.labels is str, expected list"),
    ("model.num_classes", "7", "manifest field model.num_classes is str, expected int"),
    ("model.num_classes", True, "manifest field model.num_classes is bool, expected int"),
    ("input.normalization", DELETE, "manifest lacks input.normalization"),
    ("input.normalization", {"mean": [0.5, 0.5], "std": [0.5, 0.5, 0.5]},
     "manifest input.normalization.mean must be three numbers, got [0.5, 0.5]"),
    ("input.normalization", {"mean": [0.5] * 3, "std": [0.5, 0.0, 0.5]},
     "manifest input.normalization.std must be positive, got [0.5, 0.0, 0.5]"),
    ("input.normalization", "inside", "manifest input.normalization must be 'in_model' or {mean, std}, got 'inside'"),
    ("input.height", -64, "manifest input size 64x-64 is not positive"),
    ("input.width", 64.0, "manifest field input.width is float, expected int"),
    ("output.kind", "probabilities", "manifest output.kind 'probabilities' is not one of logits, mask"),
    ("artifact", "../elsewhere.onnx",
     "manifest names an artifact outside its folder (../elsewhere.onnx); keep the artifact beside its manifest"),
    ("artifact", "/tmp/elsewhere.onnx",
     "manifest names an artifact outside its folder (/tmp/elsewhere.onnx); keep the artifact beside its manifest"),
    ("artifact_sha256", DELETE, "manifest lacks artifact_sha256"),
    ("artifact_sha256", "abc", "manifest artifact_sha256 is not a sha256 (64 lowercase hex digits)"),
    ("format_version", 2, "manifest format_version 2 is newer than this edgeseg reads (1); upgrade edgeseg to use it"),
    ("format_version", "1", "manifest field format_version is str, expected int"),
    ("format_version", 0, "manifest format_version 0 is not a version (1 is the first)"),
    ("backend", DELETE, "manifest lacks backend"),
    ("input", [], "manifest field input is list, expected dict"),
    # Issue 30 campaign: values the preprocessing would ignore or choke on (a run used to go ahead, or end as an
    # internal error inside numpy or ONNX Runtime).
    ("input.normalization.mean", [float("nan")] * 3, "manifest input.normalization.mean must be finite, got "
                                                     "[NaN, NaN, NaN]"),
    ("input.normalization.scale", float("inf"), "manifest input.normalization.scale Infinity is not 1/255, the only "
                                                "pixel scale edgeseg applies"),
    ("input.normalization.scale", 1.0, "manifest input.normalization.scale 1.0 is not 1/255, the only pixel scale "
                                       "edgeseg applies"),
    ("input.color_order", "GRB", 'manifest input.color_order "GRB" is not one of RGB, BGR'),
    ("input.resize", "zoom", 'manifest input.resize "zoom" is not one of stretch'),
    ("input.layout", "NCWH", 'manifest input.layout "NCWH" is not one of NCHW, NHWC'),
    ("input.quantization", {"scale": 0.02, "zero_point": 0},
     'manifest input.quantization is for an int8 or uint8 input; this one is "float32"'),
    ("runtime.threads", -4, "manifest runtime.threads -4 must be a whole number, 1 or more"),
    ("runtime", [], "manifest runtime is list, expected dict"),
]


@pytest.mark.parametrize("path, value, message", BAD_FIELDS,
                         ids=[f"{p}={v if v is not DELETE else 'missing'}" for p, v, _ in BAD_FIELDS])
def test_manifest_with_a_wrong_field_is_refused_in_one_line(copy, capsys, path, value, message):
    data = json.loads(copy.read_text())
    _set(path, value)(data)
    copy.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(copy)
    assert str(info.value) == f"{copy}: {message}"
    code, err = cli(["info", str(copy)], capsys)
    assert code == 2 and err == f"edgeseg info: error: {copy}: {message}"


@pytest.mark.parametrize("path, value", [("input.normalization.scale", float("inf")), ("input.color_order", "GRB"),
                                         ("input.resize", "zoom"), ("runtime.threads", -4)])
def test_predict_refuses_a_manifest_value_it_would_have_ignored(copy, tmp_path, capsys, path, value):
    # Each used to give exit 0: the scale, colour order and resize the preprocessing does not implement were
    # ignored, and runtime.threads was read only without --threads.
    data = json.loads(copy.read_text())
    _set(path, value)(data)
    copy.write_text(json.dumps(data))
    out = tmp_path / "out"
    code, err = cli(["predict", "--model", str(copy), "--source", str(frames_folder(tmp_path)), "--out", str(out),
                     "--threads", "1", "--no-progress"], capsys)
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"edgeseg predict: error: {copy}: manifest {path} ")
    assert not out.exists()


@pytest.mark.parametrize("quantization", [{"scale": 0.0, "zero_point": 0}, {"scale": float("nan"), "zero_point": 0},
                                          {"scale": 0.02, "zero_point": "0"}, "8-bit"])
def test_a_quantized_inputs_parameters_are_checked_when_read(copy, quantization):
    data = json.loads(copy.read_text())
    data["input"].update(dtype="int8", quantization=quantization)
    copy.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(copy)
    assert str(info.value) == (f"{copy}: manifest input.quantization must hold a positive finite scale and a whole "
                               f"zero_point, got {json.dumps(quantization)}")


def test_manifest_that_is_not_an_object_is_refused(copy):
    copy.write_text("[1, 2]")
    with pytest.raises(ManifestError, match="not a manifest \\(top level is not an object\\)"):
        load_manifest(copy)


def test_external_artifact_needs_the_explicit_flag_and_still_matches_its_sha256(copy, tmp_path):
    # Hand-written manifests for files edgeseg did not produce (the public peers) say so;
    # the sha256 still pins the file.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    artifact = load_manifest(copy).artifact_path
    moved = elsewhere / artifact.name
    shutil.move(artifact, moved)
    data = json.loads(copy.read_text())
    data.update(artifact=str(moved), external_artifact=True)
    copy.write_text(json.dumps(data))
    assert load_manifest(copy).artifact_path == moved
    flip_byte(moved, 10)
    with pytest.raises(ManifestError, match="does not match"):
        load_manifest(copy)


def test_symlinked_artifact_beside_its_manifest_is_accepted(copy, tmp_path):
    artifact = load_manifest(copy).artifact_path
    store = tmp_path / "store"
    store.mkdir()
    shutil.move(artifact, store / artifact.name)
    artifact.symlink_to(store / artifact.name)
    assert sha256_file(load_manifest(copy).artifact_path) == json.loads(copy.read_text())["artifact_sha256"]

