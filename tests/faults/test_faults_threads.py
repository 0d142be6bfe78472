"""Fault injection, issue 30 family 3: engine threads are bounded, once, everywhere.

`--threads 100000` used to reach ONNX Runtime (which then hung and ignored SIGTERM) and LiteRT (which
segfaulted), through `predict`, `demo`, `bench` and a manifest's `runtime.threads`. The bound is this
machine's usable cores (`os.sched_getaffinity`), checked by `runtime.backends.check_threads` before any
model is loaded; a manifest's count (written for its target device) is capped there instead.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeseg.cli import main
from edgeseg.errors import ConfigError, ManifestError
from edgeseg.manifest import load_manifest
from edgeseg.runtime.backend import Backend, available_backends, backend_class, open_backend, usable_cores
from tests.fault_kit import write_tiny_pair

CORES = usable_cores()
TOO_MANY = (f"--threads 100000: this machine lets edgeseg run on {CORES} cores; use at most {CORES}")


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def test_the_bound_is_the_affinity_not_the_machine():
    assert len(os.sched_getaffinity(0)) == CORES


@pytest.mark.parametrize("command", ["predict", "demo"])
def test_too_many_threads_is_refused_before_the_model_is_even_looked_at(tmp_path, capsys, command):
    # The model does not exist: the threads line comes first, so nothing was loaded.
    extra = ["--out", str(tmp_path / "out")] if command == "predict" else ["--headless"]
    code, err = run(capsys, command, "--model", str(tmp_path / "nowhere.onnx"), "--source", str(tmp_path),
                    "--threads", "100000", *extra)
    assert code == 2
    assert err == f"edgeseg {command}: error: {TOO_MANY}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "demo"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_or_negative_threads_is_refused(tmp_path, capsys, command, value):
    extra = ["--out", str(tmp_path / "out")] if command == "predict" else ["--headless"]
    code, err = run(capsys, command, "--model", str(tmp_path / "nowhere.onnx"), "--source", str(tmp_path),
                    "--threads", value, *extra)
    assert code == 2
    assert err == (f"edgeseg {command}: error: --threads {value}: must be 1 or more (leave it out for the target "
                   "profile's count)")
    assert list(tmp_path.iterdir()) == []


def test_one_more_than_the_cores_is_refused_and_exactly_the_cores_runs(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    code, err = run(capsys, "predict", "--model", str(model), "--source", str(model), "--out", str(tmp_path / "a"),
                    "--threads", str(CORES + 1))
    assert code == 2 and err == (f"edgeseg predict: error: --threads {CORES + 1}: this machine lets edgeseg run on "
                                 f"{CORES} cores; use at most {CORES}")
    assert not (tmp_path / "a").exists()
    with open_backend(model, threads=CORES) as backend:
        assert backend.session.get_session_options().intra_op_num_threads == CORES


def test_bench_refuses_too_many_threads_before_measuring(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model")
    out = tmp_path / "bench"
    code, err = run(capsys, "bench", "--artifacts", str(model), "--data", str(tmp_path / "nowhere"),
                    "--threads", "100000", "--out", str(out), "--no-progress")
    assert code == 2
    assert err == f"edgeseg bench: error: {TOO_MANY}"
    assert not out.exists()


def test_bench_refuses_zero_threads(tmp_path, capsys):
    code, err = run(capsys, "bench", "--artifacts", str(tmp_path / "m.onnx"), "--threads", "0",
                    "--out", str(tmp_path / "bench"), "--no-progress")
    assert code == 2
    assert err == "edgeseg bench: error: --threads 0: must be 1 or more (leave it out for the target profile's count)"
    assert list(tmp_path.iterdir()) == []


def test_a_manifests_huge_thread_count_is_capped_at_the_cores_before_onnx_runtime(tmp_path, capsys):
    model = write_tiny_pair(tmp_path / "model", runtime={"threads": 100000})
    with open_backend(model) as backend:
        assert backend.threads == CORES
        assert backend.session.get_session_options().intra_op_num_threads == CORES
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.zeros((40, 50, 3), np.uint8))
    out = tmp_path / "out"
    code, _ = run(capsys, "predict", "--model", str(model), "--source", str(image), "--out", str(out),
                  "--no-progress")
    assert code == 0 and (out / "predictions.json").is_file()


@pytest.mark.parametrize("value", [-1, 0, "many", True, 2.5])
def test_a_manifests_malformed_thread_count_is_one_line(tmp_path, capsys, value):
    model = write_tiny_pair(tmp_path / "model", runtime={"threads": value})
    out = tmp_path / "out"
    code, err = run(capsys, "predict", "--model", str(model), "--source", str(model), "--out", str(out))
    assert code == 2
    assert err == (f"edgeseg predict: error: {model}: manifest runtime.threads {json.dumps(value)} must be a whole "
                   "number, 1 or more")  # as the manifest (JSON) spells it
    assert not out.exists()


@pytest.mark.parametrize("name", available_backends())
def test_every_backend_refuses_a_huge_count_before_loading_its_engine(tmp_path, name):
    # The bound is in the base class, which every backend calls first: no engine (LiteRT, TensorRT,
    # OpenVINO, ...) ever sees the count, even where its package is not installed here.
    manifest = load_manifest(write_tiny_pair(tmp_path / "model"))
    with pytest.raises(ConfigError, match=f"^{TOO_MANY}$"):
        backend_class(name)(manifest, threads=100000)


def test_the_base_class_checks_before_a_subclass_can_load(tmp_path):
    loaded = []

    class Recording(Backend):
        def __init__(self, manifest, *, threads=None) -> None:
            super().__init__(manifest, threads=threads)
            loaded.append(True)

    manifest = load_manifest(write_tiny_pair(tmp_path / "model"))
    with pytest.raises(ConfigError):
        Recording(manifest, threads=-1)
    assert loaded == []
    Recording(manifest, threads=1)
    assert loaded == [True]


def test_a_malformed_manifest_count_is_refused_when_read_and_the_bench_caps_a_huge_one(tmp_path):
    from edgeseg.benchmarks.bench import Bench
    from edgeseg.benchmarks.config import BenchConfig

    # Read, not only when used: a run given --threads never consults it (issue 30 campaign: it was then ignored).
    with pytest.raises(ManifestError, match='manifest runtime.threads "many" must be a whole number, 1 or more'):
        load_manifest(write_tiny_pair(tmp_path / "model", runtime={"threads": "many"}))
    capped = load_manifest(write_tiny_pair(tmp_path / "capped", runtime={"threads": 100000}))
    bench = Bench(BenchConfig(out=tmp_path / "bench", artifacts=(capped.path,)))
    assert bench.threads_for(capped) == (CORES, f"target profile asks for 100000 threads; capped at this machine's "
                                                f"{CORES} cores")
    assert json.loads(Path(capped.path).read_text())["runtime"]["threads"] == 100000  # the manifest is not rewritten
    # A manifest made in memory (as conversion's verification does) meets the same rule, in the same words.
    from edgeseg.manifest import Manifest
    from edgeseg.runtime.backend import manifest_threads

    made = Manifest(capped.path, {**capped.data, "runtime": {"threads": 0}})
    with pytest.raises(ManifestError, match="manifest runtime.threads 0 must be a whole number, 1 or more"):
        manifest_threads(made)
    assert manifest_threads(capped) == CORES
