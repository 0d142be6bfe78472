"""The registries agree: every target's format is registered and run by the target's backend, every
module a format registers exists and defines what it must (`export`, `BACKEND`, doctor's probe), and every
package a format needs is brought by an extra setup.cfg declares. A half-registered format fails here,
not on a user's machine.

Read from the source (ast), never imported: an exporter or runner imports its framework, which this
machine may not have.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
from pathlib import Path

from edgeseg.formats import ArtifactFormat, Package, all_formats
from edgeseg.optional import SHARED_PACKAGES
from edgeseg.targets import TargetProfile, all_targets, backend_sections
from tests.constants import REPO

# What each kind of registered module must define at its top level.
EXPORTER_NAMES = {"export"}
RUNNER_NAMES = {"BACKEND"}
PROBE_NAMES = {"probe", "run_verdict", "report_lines"}


def top_level_names(path: Path) -> set[str]:
    """Names a module defines at its top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def package_dirs(root: Path = REPO) -> dict[str, str]:
    """setup.cfg's package_dir: 'edgeseg.formats' -> 'formats'."""
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    lines = [line.split("=") for line in cfg["options"]["package_dir"].strip().splitlines()]
    return {package.strip(): folder.strip() for package, folder in lines}


def module_file(module: str, root: Path = REPO) -> Path:
    """'edgeseg.formats.onnx.runtime' -> <root>/formats/onnx/runtime.py (or its package's __init__.py)."""
    dirs = package_dirs()
    parts = module.split(".")
    for cut in range(len(parts), 0, -1):
        folder = dirs.get(".".join(parts[:cut]))
        if folder is not None:
            base = root / folder
            rest = parts[cut:]
            break
    else:
        raise AssertionError(f"{module}: not an edgeseg module")
    path = base.joinpath(*rest)
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def declared_extras(root: Path = REPO) -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    return set(cfg["options.extras_require"])


def registry_problems(targets: dict[str, TargetProfile], formats: dict[str, ArtifactFormat],
                      root: Path = REPO) -> list[str]:
    """One line per thing registered in one place but missing from another."""
    problems = []

    def check(fmt: str, role: str, module: str | None, needed: set[str]) -> None:
        if module is None:
            return
        path = module_file(module, root)
        if not path.is_file():
            problems.append(f"format {fmt}: {role} module {module} not found ({path.relative_to(root)})")
        elif missing := needed - top_level_names(path):
            problems.append(f"format {fmt}: {role} module {module} defines no {', '.join(sorted(missing))}")

    extras = declared_extras(root)
    for name, fmt in formats.items():
        for module in fmt.exporters():
            check(name, "exporter", module, EXPORTER_NAMES)
        check(name, "runner", fmt.runner, RUNNER_NAMES)
        check(name, "probe", fmt.probe, PROBE_NAMES)
        problems += [f"format {name}: package {p.distribution} names extra '{p.extra}', which setup.cfg lacks"
                     for p in (*fmt.run_packages, *fmt.convert_packages) if p.extra and p.extra not in extras]
    for name, target in targets.items():
        fmt = formats.get(target.format)
        if fmt is None:
            problems.append(f"target {name}: format {target.format} is not registered")
        elif fmt.backend != target.backend:
            problems.append(f"target {name}: backend {target.backend}, but {target.format} is run by {fmt.backend}")
        elif fmt.exporter is None:
            problems.append(f"target {name}: format {target.format} has no exporter")
    return problems


def test_the_registries_agree():
    assert registry_problems(all_targets(), all_formats()) == []


def test_every_format_with_an_exporter_is_used_by_a_target():
    assert {t.format for t in all_targets().values()} == {n for n, f in all_formats().items() if f.exporter}


def test_each_suffix_and_backend_names_one_format_runner():
    formats = all_formats().values()
    assert len({f.backend for f in formats}) == len(formats)
    assert all(f.suffix.startswith(".") for f in formats)


def test_a_missing_exporter_runner_or_probe_module_is_reported():
    formats = {**all_formats(), "mlpackage": ArtifactFormat(
        "mlpackage", backend="coreml", suffix=".mlpackage", runner="edgeseg.formats.coreml.runtime",
        exporter="edgeseg.formats.coreml.convert.export", probe="edgeseg.formats.coreml.runtime")}
    assert registry_problems(all_targets(), formats) == [
        "format mlpackage: exporter module edgeseg.formats.coreml.convert.export not found "
        "(formats/coreml/convert/export.py)",
        "format mlpackage: runner module edgeseg.formats.coreml.runtime not found (formats/coreml/runtime.py)",
        "format mlpackage: probe module edgeseg.formats.coreml.runtime not found (formats/coreml/runtime.py)"]


def test_a_precision_exporter_that_is_missing_is_reported():
    onnx = dataclasses.replace(all_formats()["onnx"], precision_exporters={"fp16": "edgeseg.formats.onnx.convert.fp16"})
    assert registry_problems(all_targets(), {**all_formats(), "onnx": onnx}) == [
        "format onnx: exporter module edgeseg.formats.onnx.convert.fp16 not found (formats/onnx/convert/fp16.py)"]


def test_modules_that_lack_what_their_role_needs_are_reported():
    # The runner module of onnx as an exporter (no export), the probe of tflite as a runner (no BACKEND).
    odd = ArtifactFormat("odd", backend="odd", suffix=".odd", exporter="edgeseg.formats.onnx.runtime",
                         runner="edgeseg.formats.tflite.runtime.probe", probe="edgeseg.formats.tflite.runtime.runner")
    assert registry_problems({}, {"odd": odd}) == [
        "format odd: exporter module edgeseg.formats.onnx.runtime defines no export",
        "format odd: runner module edgeseg.formats.tflite.runtime.probe defines no BACKEND",
        "format odd: probe module edgeseg.formats.tflite.runtime.runner defines no probe, report_lines, run_verdict"]


def test_a_package_whose_extra_setup_cfg_lacks_is_reported():
    onnx = dataclasses.replace(all_formats()["onnx"], run_packages=(Package("onnxruntime", "onnxruntime", "ort"),))
    assert registry_problems({}, {"onnx": onnx}) == [
        "format onnx: package onnxruntime names extra 'ort', which setup.cfg lacks"]


def test_a_target_whose_backend_does_not_run_its_format_is_reported():
    targets = dict(all_targets())
    targets["host-cpu"] = dataclasses.replace(targets["host-cpu"], backend="litert")
    assert registry_problems(targets, all_formats()) == [
        "target host-cpu: backend litert, but onnx is run by onnxruntime"]


def test_every_shared_package_names_a_declared_extra():
    assert {p.extra for p in SHARED_PACKAGES} <= declared_extras()


def test_the_target_sections_are_the_formats_own():
    assert backend_sections() == {"litert": all_formats()["tflite"].section,
                                  "openvino": all_formats()["openvino"].section,
                                  "tensorrt": all_formats()["tensorrt-bundle"].section}


def test_the_intel_targets_are_openvino_targets_each_naming_its_device():
    targets = all_targets()
    assert {name: t.openvino.device for name, t in targets.items() if t.openvino is not None} == {
        "intel-cpu": "CPU", "intel-gpu": "GPU", "intel-npu": "NPU"}
    assert {t.format for t in targets.values() if t.backend == "openvino"} == {"openvino"}
