"""What `pip install edgeseg[EXTRAS]` would put on an arm64 device, for each device edgeseg documents.

pip's `--platform`/`--python-version` choose wheels for another machine, but only from the platform
tags it is given (a bare `manylinux2014_aarch64` hides every wheel tagged for a newer glibc, such as
onnxruntime's and ai-edge-litert's `manylinux_2_27`/`_2_28` wheels), and it evaluates environment
markers with this machine's values. So this script passes every aarch64 tag a device's glibc accepts
and reports aarch64 to the marker evaluation, then runs pip's dry run on a wheel of this source tree,
once per device; it downloads nothing it installs.

    python benchmarks/scripts/device_install_dry_run.py [EXTRAS]     e.g. "" or "onnxruntime,litert"

Devices: a Jetson on JetPack 6 (Ubuntu 22.04: glibc 2.35, Python 3.10, python3-numpy 1.21.5) and the
arm64 device environment of tests/arm64 (Debian 12: glibc 2.36, Python 3.11, python3-numpy 1.24.2). Each
is resolved twice: as pip alone would, and with the system numpy's major version as a constraint, as
docs/jetson.md installs (`numpy<2` on both: the system OpenCV's ABI). Where the system's numpy satisfies
every requirement pip installs no numpy; JetPack 6's 1.21.5 is older than onnxruntime (>= 1.21.6) and
ai-edge-litert (>= 1.23.2) accept, so there pip brings a numpy 1.x into the venv, which the system's
OpenCV, built against an older 1.x, still imports (numpy keeps its ABI backward compatible within 1.x).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from edgeseg.optional import requirement

ROOT = Path(__file__).resolve().parents[2]
# name -> (glibc major.minor, Python version, the distribution's numpy)
DEVICES = {
    "Jetson, JetPack 6 (Ubuntu 22.04)": ((2, 35), "3.10", "1.21.5"),
    "arm64 device environment (Debian 12)": ((2, 36), "3.11", "1.24.2"),
}


def platform_tags(glibc: tuple[int, int]) -> list[str]:
    """Every aarch64 wheel tag a system with this glibc accepts, newest first (PEP 600, plus the legacy alias)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_aarch64" for m in range(minor, 16, -1)]
    return [*tags, "manylinux2014_aarch64", "linux_aarch64"]


def dry_run(wheel: Path, extras: str, glibc: tuple[int, int], python: str, work: Path,
            numpy: str | None = None) -> list[tuple[str, str, str]]:
    """(name, version, wheel file) of what pip installs; with `numpy`, that system numpy's major version is
    a constraint, and the numpy row says whether the system's own satisfies every requirement (then pip
    installs none) or which requirement it fails."""
    from pip._internal.cli.main import main as pip_main
    from pip._vendor.packaging.requirements import Requirement

    report = work / f"report-{python}.json"
    if numpy:
        (work / "keep-numpy.txt").write_text(f"numpy<{int(numpy.split('.')[0]) + 1}\n")
    arguments = ["install", "--quiet", "--dry-run", "--ignore-installed", "--target", str(work / "t"),
                 "--python-version", python, "--only-binary=:all:", "--report", str(report)]
    for tag in platform_tags(glibc):
        arguments += ["--platform", tag]
    if numpy:
        arguments += ["-c", str(work / "keep-numpy.txt")]
    code = pip_main([*arguments, f"{wheel}[{extras}]" if extras else str(wheel)])
    if code:
        raise SystemExit(code)
    items = json.loads(report.read_text())["install"]
    unmet = []
    for item in items:
        for text in item["metadata"].get("requires_dist", []):
            requirement = Requirement(text)
            if requirement.name == "numpy" and requirement.marker is None and numpy \
                    and not requirement.specifier.contains(numpy, prereleases=True):
                unmet.append(f"{item['metadata']['name']} needs {requirement}")
    rows = []
    for item in items:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        file = item["download_info"]["url"].rsplit("/", 1)[-1]
        if numpy and name == "numpy":
            version, file = (numpy, "the system's: pip installs none") if not unmet else \
                (version, f"{file} (into the venv: the system's {numpy} is too old, {'; '.join(unmet)})")
        rows.append((name, version, file))
    return rows


def main() -> int:
    extras = sys.argv[1] if len(sys.argv) > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp, str(ROOT)],
                       check=True)
        (wheel,) = Path(tmp).glob("edgeseg-*.whl")
        platform.machine = lambda: "aarch64"  # what packaging.markers reads for platform_machine
        for device, (glibc, python, numpy) in DEVICES.items():
            for constraint in (None, numpy):
                how = (f"the system's numpy {numpy}, 'numpy<{int(numpy.split('.')[0]) + 1}' kept (docs/jetson.md)"
                       if constraint else "pip alone")
                print(f"{device}: Python {python}, glibc {glibc[0]}.{glibc[1]}, {requirement(extras)}, {how}")
                for name, version, file in dry_run(wheel, extras, glibc, python, Path(tmp), constraint):
                    print(f"  {name:18} {version:10} {file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
