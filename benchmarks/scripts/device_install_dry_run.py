"""What `pip install edgeseg[EXTRAS]` would put on a Jetson (Linux aarch64, JetPack 6's Python 3.10).

pip's `--platform`/`--python-version` choose wheels for another machine but evaluate environment
markers with this machine's values, so pip's own dry run lists the OpenCV wheel that the base
install leaves out on Linux aarch64. This script reports the Jetson's machine to the marker
evaluation and runs pip's dry run on a wheel of this source tree; it downloads nothing it installs.

    python benchmarks/scripts/device_install_dry_run.py [EXTRAS]     e.g. "" or "onnxruntime"
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    extras = sys.argv[1] if len(sys.argv) > 1 else ""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp, str(ROOT)],
                       check=True)
        (wheel,) = Path(tmp).glob("edgeseg-*.whl")
        report = Path(tmp) / "report.json"
        platform.machine = lambda: "aarch64"  # what packaging.markers reads for platform_machine
        from pip._internal.cli.main import main as pip_main

        code = pip_main(["install", "--quiet", "--dry-run", "--ignore-installed", "--target", str(Path(tmp) / "t"),
                         "--platform", "manylinux2014_aarch64", "--python-version", "3.10", "--only-binary=:all:",
                         "--report", str(report), f"{wheel}[{extras}]" if extras else str(wheel)])
        if code:
            return code
        for item in json.loads(report.read_text())["install"]:
            print(f"{item['metadata']['name']:16} {item['metadata']['version']:10} "
                  f"{item['download_info']['url'].rsplit('/', 1)[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
