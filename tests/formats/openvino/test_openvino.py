"""OpenVINO IR for the intel-* targets: FP32 pinned to f32 arithmetic, bf16 where the CPU has it, INT8
through NNCF within the INT8 budget, the IR's rt_info against its manifest, and what doctor says.

Conversions run at 160 px (as the TFLite tests do: tests/constants.py), once per precision for the module.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("openvino", reason="the OpenVINO target needs openvino (pip install 'edgeseg[openvino-convert]')")
pytest.importorskip("nncf", reason="OpenVINO INT8 needs NNCF (pip install 'edgeseg[openvino-convert]')")

import openvino as ov  # noqa: E402

from edgeseg import cpu_features  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.convert.export import exporter_name  # noqa: E402
from edgeseg.convert.pipeline import ConvertRequest, convert, plan  # noqa: E402
from edgeseg.errors import BackendUnavailableError, ConfigError, ManifestError  # noqa: E402
from edgeseg.formats.openvino import runtime as ov_backend  # noqa: E402
from edgeseg.formats.openvino.convert import int8 as openvino_int8  # noqa: E402
from edgeseg.manifest import MANIFEST_SUFFIX, Manifest, load_manifest  # noqa: E402
from edgeseg.runtime import doctor  # noqa: E402
from edgeseg.runtime.backend import open_backend  # noqa: E402
from edgeseg.runtime.model_metadata import disagreements, embedded_summary  # noqa: E402
from tests.constants import (  # noqa: E402
    FORMAT_RESOLUTION,
    FP32_MIN_AGREEMENT,
    HOST_CPU,
    INT8_CALIBRATION,
    INT8_CALIBRATION_IMAGES,
)

HAS_BF16 = bool(cpu_features.bfloat16_flags())
NO_BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni\n"


@pytest.fixture(scope="module")
def made(sample_checkpoint: Path, tmp_path_factory):
    """`made(precision)`: the sample model converted for intel-cpu at 160 px, once per precision."""
    cache: dict[str, dict] = {}

    def build(precision: str) -> dict:
        if precision not in cache:
            cache[precision] = convert(ConvertRequest(
                target="intel-cpu", precision=precision, resolution=FORMAT_RESOLUTION, weights=str(sample_checkpoint),
                out=tmp_path_factory.mktemp(f"intel-cpu-{precision}"), verify_images=4, progress=False,
                calibration=INT8_CALIBRATION if precision == "int8" else None,
                options={"calib_images": INT8_CALIBRATION_IMAGES}))
        return cache[precision]

    return build


def xml_of(manifest: dict) -> Path:
    return Path(manifest["manifest_path"][: -len(MANIFEST_SUFFIX)])


def layer_types(xml: Path) -> list[str]:
    return [layer.get("type") for layer in ET.parse(xml).getroot().iter("layer")]


def test_the_openvino_format_is_registered_with_nncf_for_int8():
    assert exporter_name("openvino", "fp32") == "edgeseg.formats.openvino.convert.export"
    assert exporter_name("openvino", "bf16") == "edgeseg.formats.openvino.convert.export"
    assert exporter_name("openvino", "int8") == "edgeseg.formats.openvino.convert.int8"


@pytest.mark.slow
def test_fp32_agrees_with_pytorch_and_runs_with_f32_arithmetic(made):
    m = made("fp32")
    v = m["verification"]
    assert v["passed"] and v["argmax_agreement"] >= FP32_MIN_AGREEMENT
    assert v["runtime"].endswith("inference precision f32")
    assert m["runtime"]["inference_precision"] == "f32" and m["runtime"]["device"] == "CPU"
    xml = xml_of(m)
    weights = xml.with_suffix(".bin")
    assert m["conversion"]["openvino"]["weights"]["file"] == weights.name
    assert "FakeQuantize" not in layer_types(xml)
    # FP32 weights on disk (compress_to_fp16=False): the .bin is about 4 bytes per parameter, not 2
    assert m["size_mb"] == round((xml.stat().st_size + weights.stat().st_size) / 2**20, 3)
    with open_backend(xml) as backend:
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    if HAS_BF16:  # what the pin prevents: left to itself the CPU plugin computes in bf16 here
        default = ov.Core().compile_model(str(xml), "CPU")
        assert default.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bfloat16 instructions (AVX512_BF16 or AMX)")
def test_bf16_is_verified_within_its_budget_and_runs_with_the_hint_it_records(made):
    m = made("bf16")
    v = m["verification"]
    assert v["passed"] and v["budget"] == {"min_agreement": 0.99, "max_miou_drop": 0.5}
    assert 0.99 <= v["argmax_agreement"] < 1.0  # bfloat16 arithmetic moves some near-tied pixels, within budget
    assert m["runtime"]["inference_precision"] == "bf16"
    with open_backend(xml_of(m)) as backend:
        assert backend.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16


def test_bf16_is_refused_in_one_line_before_any_work_on_a_cpu_without_bfloat16(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(NO_BF16_CPUINFO)
    monkeypatch.setattr(cpu_features, "CPUINFO", cpuinfo)
    with pytest.raises(ConfigError, match=r"^--precision bf16 for intel-cpu: this CPU has no bfloat16 instructions "
                                          r"\(avx512_bf16 or amx_bf16\)"):
        plan(ConvertRequest(target="intel-cpu", precision="bf16", resolution=FORMAT_RESOLUTION, weights="sample",
                            out=tmp_path / "out"))
    with pytest.raises(ConfigError, match="does not support precision 'bf16'"):
        plan(ConvertRequest(target=HOST_CPU, precision="bf16", resolution=FORMAT_RESOLUTION, weights="sample",
                            out=tmp_path / "out"))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BF16, reason="needs a bf16 artifact, made on a CPU with bfloat16 instructions")
def test_the_backend_refuses_a_bf16_artifact_where_openvino_has_no_bf16_kernels(made, monkeypatch):
    monkeypatch.setattr(ov_backend, "has_bfloat16", lambda core: False)
    with pytest.raises(BackendUnavailableError, match="a bf16 artifact, and this CPU has no bfloat16 instructions"):
        open_backend(xml_of(made("bf16")))


@pytest.mark.slow
def test_int8_is_quantized_by_nncf_within_the_int8_budget(made):
    fp32, int8 = made("fp32"), made("int8")
    v = int8["verification"]
    assert v["passed"] and v["argmax_agreement"] >= 0.90 and v["miou_delta"] >= -1.0
    q = int8["conversion"]["quantization"]
    assert q["tool"].startswith("NNCF 3.") and q["calibration_images"] == 16 and q["quantized_ops"] > 60
    assert q["budget_search"][-1]["passed"]
    assert int8["runtime"]["inference_precision"] == "f32"
    assert layer_types(xml_of(int8)).count("FakeQuantize") > 60
    assert int8["size_mb"] < fp32["size_mb"] / 3  # int8 weights on disk
    assert int8["conversion"]["aspp_rewrite"] == fp32["conversion"]["aspp_rewrite"]


@pytest.mark.slow
def test_a_missed_budget_keeps_the_most_sensitive_ops_in_float_through_ignored_scopes(unreachable_int8_budget_job,
                                                                                     tmp_path):
    job = unreachable_int8_budget_job("intel-cpu")
    job.options["int8_max_float_layers"] = 1  # one search step: each step is a whole NNCF quantization
    result = openvino_int8.export(job, tmp_path)
    q = result.details["quantization"]
    assert [a["kept_in_float"] for a in q["budget_search"]] == [0, 1] and not result.verification["passed"]
    assert len(q["kept_in_float"]) == 1 and set(q["kept_in_float_agreement_gain"]) == set(q["kept_in_float"])
    still_quantized = openvino_int8.quantized_ops(ov.Core().read_model(str(result.artifact)))
    assert not set(q["kept_in_float"]) & set(still_quantized)
    assert q["quantized_ops"] == len(still_quantized)


@pytest.mark.slow
def test_info_reads_the_rt_info_and_finds_it_agrees_with_the_manifest(made, capsys):
    m = made("int8")
    assert main(["info", str(xml_of(m))]) == 0
    out = capsys.readouterr().out
    assert "metadata     OpenVINO IR rt_info: " in out and "agrees with the manifest" in out
    summary = embedded_summary(xml_of(m))
    assert summary["labels"] == m["model"]["labels"] and summary["inference_precision"] == "f32"
    manifest = load_manifest(xml_of(m))
    assert disagreements(manifest, summary) == []
    other = json.loads(json.dumps(manifest.data))
    other["model"]["labels"] = list(reversed(other["model"]["labels"]))
    other["runtime"]["inference_precision"] = "bf16"
    assert disagreements(Manifest(manifest.path, other), summary) == ["labels", "inference_precision"]


@pytest.mark.slow
def test_changed_weights_or_an_absent_device_are_refused_in_one_line(made, tmp_path):
    m = made("fp32")
    xml = xml_of(m)
    for path in (xml, xml.with_suffix(".bin"), Path(m["manifest_path"])):
        shutil.copy2(path, tmp_path / path.name)
    copy = tmp_path / xml.name
    data = json.loads((tmp_path / f"{xml.name}.json").read_text())
    data["runtime"]["device"] = "NPU"
    (tmp_path / f"{xml.name}.json").write_text(json.dumps(data))
    with pytest.raises(BackendUnavailableError, match=r"needs the OpenVINO device NPU, which this machine lacks "
                                                      r"\(openvino.Core\(\).available_devices: "):
        open_backend(copy)
    weights = copy.with_suffix(".bin")
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(ManifestError, match=r"\.bin: sha256 .* does not match"):
        open_backend(copy)


def test_doctor_says_which_intel_targets_run_here_and_whether_the_cpu_has_bfloat16():
    report = doctor.diagnose()
    ov_report = report["openvino"]
    assert ov_report["status"] == "ok" and "CPU" in ov_report["devices"]
    assert ov_report["cpu_bfloat16"] is HAS_BF16
    assert report["targets"]["intel-cpu"]["run"]["ok"]
    for name, device in (("intel-gpu", "GPU"), ("intel-npu", "NPU")):
        if device not in ov_report["devices"]:
            verdict = report["targets"][name]["run"]
            assert not verdict["ok"] and verdict["why"].startswith(
                f"cannot run, because OpenVINO sees no Intel {device} here (openvino.Core().available_devices: ")
    text = doctor.format_report(report)
    line = next(line for line in text.splitlines() if line.startswith("openvino "))
    assert line.endswith("CPU bfloat16: yes (" + ", ".join(cpu_features.bfloat16_flags()) + ")" if HAS_BF16
                         else "CPU bfloat16: no")


def test_bfloat16_flags_are_read_from_cpuinfo():
    assert cpu_features.bfloat16_flags("flags\t: fpu avx512f avx512_bf16 amx_bf16\n") == ["avx512_bf16", "amx_bf16"]
    assert cpu_features.bfloat16_flags(NO_BF16_CPUINFO) == []
