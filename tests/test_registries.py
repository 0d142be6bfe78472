"""The registries agree: every target's format is registered and run by the target's backend, every
format's exporter module exists and exports, every backend module defines BACKEND and runs some
format. A half-registered backend or format fails here, not on a user's machine.

Read from the source (ast), never imported: an exporter or backend module imports its framework,
which this machine may not have.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
from pathlib import Path

import pytest

from edgeseg.targets import BACKEND_SECTIONS, FORMATS, ArtifactFormat, TargetProfile, all_targets

ROOT = Path(__file__).resolve().parents[1]
# Backends that run no converted format: PyTorch runs the FP32 checkpoint itself (a hand-written manifest).
REFERENCE_BACKENDS = {"pytorch"}


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _module_file(module: str, root: Path) -> Path:
    """'edgeseg.convert.onnx_export' -> <root>/convert/onnx_export.py (the package maps to the repo's folders)."""
    parts = module.split(".")
    assert parts[0] == "edgeseg", module
    return root.joinpath(*parts[1:]).with_suffix(".py")


def registry_problems(targets: dict[str, TargetProfile], formats: dict[str, ArtifactFormat], root: Path,
                      sections: dict[str, type] = BACKEND_SECTIONS) -> list[str]:
    """One line per thing registered in one table but missing from another."""
    backends = {p.stem: p for p in (root / "runtime" / "backends").glob("*.py") if not p.stem.startswith("_")}
    problems = [f"runtime/backends/{name}.py defines no BACKEND" for name, path in sorted(backends.items())
                if "BACKEND" not in _top_level_names(path)]
    problems += [f"BACKEND_SECTIONS: section '{key}:' names no backend module runtime/backends/{key}.py"
                 for key in sections if key not in backends]
    for name, fmt in formats.items():
        for module in fmt.exporters():
            exporter = _module_file(module, root)
            if not exporter.is_file():
                problems.append(f"format {name}: exporter module {module} not found ({exporter.relative_to(root)})")
            elif "export" not in _top_level_names(exporter):
                problems.append(f"format {name}: {module} has no export(job, staging)")
        if fmt.backend not in backends:
            problems.append(f"format {name}: backend {fmt.backend} has no module runtime/backends/{fmt.backend}.py")
    run_by_a_format = {fmt.backend for fmt in formats.values()}
    problems += [f"backend {name}: no format in FORMATS is run by it" for name in sorted(backends)
                 if name not in run_by_a_format | REFERENCE_BACKENDS]
    for name, target in targets.items():
        fmt = formats.get(target.format)
        if fmt is None:
            problems.append(f"target {name}: format {target.format} is not in FORMATS")
        elif fmt.backend != target.backend:
            problems.append(f"target {name}: backend {target.backend}, but {target.format} is run by {fmt.backend}")
    return problems


def test_the_registries_agree():
    assert registry_problems(all_targets(), FORMATS, ROOT) == []


def test_every_format_is_used_by_a_target():
    assert {t.format for t in all_targets().values()} == set(FORMATS)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the backend and exporter modules the registries name, to plant half-registrations in."""
    for folder in ("runtime/backends", "convert"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_a_backend_module_no_format_runs_is_reported(tree: Path):
    (tree / "runtime/backends/coreml.py").write_text("BACKEND = object\n")
    assert registry_problems(all_targets(), FORMATS, tree) == ["backend coreml: no format in FORMATS is run by it"]


def test_a_format_without_its_exporter_or_backend_module_is_reported(tree: Path):
    formats = {**FORMATS, "mlpackage": ArtifactFormat("mlpackage", exporter="edgeseg.convert.coreml_export",
                                                      backend="coreml")}
    problems = registry_problems(all_targets(), formats, tree)
    assert problems == ["format mlpackage: exporter module edgeseg.convert.coreml_export not found "
                        "(convert/coreml_export.py)",
                        "format mlpackage: backend coreml has no module runtime/backends/coreml.py"]


def test_a_precision_exporter_that_is_missing_is_reported(tree: Path):
    onnx = dataclasses.replace(FORMATS["onnx"], precision_exporters={"fp16": "edgeseg.convert.ort_fp16"})
    assert registry_problems(all_targets(), {**FORMATS, "onnx": onnx}, tree) == [
        "format onnx: exporter module edgeseg.convert.ort_fp16 not found (convert/ort_fp16.py)"]


def test_an_exporter_module_without_export_is_reported(tree: Path):
    (tree / "convert/coreml_export.py").write_text("def convert(job, staging):\n    pass\n")
    (tree / "runtime/backends/coreml.py").write_text("BACKEND = object\n")
    formats = {**FORMATS, "mlpackage": ArtifactFormat("mlpackage", exporter="edgeseg.convert.coreml_export",
                                                      backend="coreml")}
    assert registry_problems(all_targets(), formats, tree) == [
        "format mlpackage: edgeseg.convert.coreml_export has no export(job, staging)"]


def test_a_backend_module_without_backend_is_reported(tree: Path):
    (tree / "runtime/backends/coreml.py").write_text("class CoreMLBackend:\n    pass\n")
    formats = {**FORMATS, "mlpackage": ArtifactFormat("mlpackage", exporter="edgeseg.convert.onnx_export",
                                                      backend="coreml")}
    assert registry_problems(all_targets(), formats, tree) == ["runtime/backends/coreml.py defines no BACKEND"]


def test_a_target_whose_backend_does_not_run_its_format_is_reported(tree: Path):
    targets = dict(all_targets())
    targets["host-cpu"] = dataclasses.replace(targets["host-cpu"], backend="litert")
    assert registry_problems(targets, FORMATS, tree) == [
        "target host-cpu: backend litert, but onnx is run by onnxruntime"]


def test_a_backend_section_without_its_backend_module_is_reported(tree: Path):
    sections = {**BACKEND_SECTIONS, "coreml": object}
    assert registry_problems(all_targets(), FORMATS, tree, sections) == [
        "BACKEND_SECTIONS: section 'coreml:' names no backend module runtime/backends/coreml.py"]


def test_the_intel_targets_are_openvino_targets_each_naming_its_device():
    targets = all_targets()
    assert {name: t.openvino.device for name, t in targets.items() if t.openvino is not None} == {
        "intel-cpu": "CPU", "intel-gpu": "GPU", "intel-npu": "NPU"}
    assert {t.format for t in targets.values() if t.backend == "openvino"} == {"openvino"}
