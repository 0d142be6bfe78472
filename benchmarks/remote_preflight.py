"""Before converting anything for a device: does it answer, is its edgeseg one this edgeseg can talk to,
and can it run every target of the sweep? One ssh command finds the device's edgeseg (its venv, or the
login PATH) and runs its `edgeseg doctor --json`; every problem found is said in one line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import edgeseg
from edgeseg.benchmarks.remote_ssh import DeviceError, SshDevice, last_line, remote_word
from edgeseg.formats import all_formats
from edgeseg.optional import install_hint

NO_EDGESEG_EXIT = 3
PREFLIGHT_TIMEOUT_S = 120  # doctor imports every engine; a Jetson's TensorRT import takes seconds, not minutes
# The lines the script prints before the doctor's JSON.
_KEYS = ("edgeseg", "work")


@dataclass(frozen=True)
class DeviceInstall:
    """What the preflight learnt: where the device's edgeseg and the bench's copies are (absolute paths on
    the device), and its doctor report (whose `python.executable` runs edgeseg there)."""

    edgeseg: str
    work: str
    doctor: dict[str, Any]

    @property
    def python(self) -> str:
        return str(self.doctor.get("python", {}).get("executable") or "python3")

    @property
    def version(self) -> str:
        return str(self.doctor.get("edgeseg", {}).get("version"))


def preflight_script(venv: str | None) -> str:
    """The POSIX shell script that locates the device's edgeseg and runs its doctor."""
    venv_word = remote_word(venv) if venv else "''"
    return "\n".join([
        f"V={venv_word}",
        'if [ -n "$V" ]; then E="$V/bin/edgeseg"; W="$V/share/edgeseg/bench"',
        'else E=$(command -v edgeseg || true); W="$HOME/.cache/edgeseg/device"; fi',
        f'if [ -z "$E" ] || [ ! -x "$E" ]; then echo "$E"; exit {NO_EDGESEG_EXIT}; fi',
        "printf 'edgeseg=%s\\nwork=%s\\n' \"$E\" \"$W\"",
        'exec "$E" doctor --json',
    ])


def device_extras() -> str:
    """The extras a device needs for the rows it measures: the engines of the ONNX and TFLite artifacts."""
    return ",".join(p.extra for name in ("onnx", "tflite") for p in all_formats()[name].run_packages if p.extra)


def compatible(device_version: str, ours: str = edgeseg.__version__) -> bool:
    """The same release series (major.minor): what the workstation writes, the device reads."""
    return device_version.split(".")[:2] == ours.split(".")[:2]


def check_device(device: SshDevice, targets: list[str]) -> DeviceInstall:
    """The device's install, or one DeviceError line naming everything it lacks for `targets`."""
    name, venv = device.address.name, device.address.venv
    done = device.run(preflight_script(venv), timeout=PREFLIGHT_TIMEOUT_S)
    if done.returncode == NO_EDGESEG_EXIT:
        if venv:
            raise DeviceError(f"{name} has no edgeseg at {done.stdout.strip() or venv + '/bin/edgeseg'}: the "
                              f"device path ({venv}) must be its edgeseg venv (python3 -m venv {venv} && "
                              f"{venv}/bin/{install_hint(device_extras())}); nothing was converted")
        raise DeviceError(f"{name} has no edgeseg on its login PATH (ssh runs a non-interactive shell); name the "
                          f"venv that holds it: ssh://{device.address.destination}/~/edgeseg; nothing was converted")
    lines = done.stdout.splitlines()
    found = dict(line.split("=", 1) for line in lines[:len(_KEYS)] if "=" in line)
    try:
        doctor = json.loads("\n".join(lines[len(_KEYS):]))
    except json.JSONDecodeError:
        doctor = None
    if done.returncode != 0 or set(found) != set(_KEYS) or not isinstance(doctor, dict):
        said = last_line(done.stderr) or last_line(done.stdout) or f"exit status {done.returncode}"
        raise DeviceError(f"{name}: `{found.get('edgeseg', 'edgeseg')} doctor --json` failed ({said}); "
                          "nothing was converted")
    install = DeviceInstall(edgeseg=found["edgeseg"], work=found["work"], doctor=doctor)
    problems = install_problems(install, targets)
    if problems:
        raise DeviceError(f"{name} cannot run this bench: {'; '.join(problems)}; nothing was converted")
    return install


def install_problems(install: DeviceInstall, targets: list[str]) -> list[str]:
    """What the device's install lacks for `targets`, each as a short clause (empty: nothing)."""
    problems = []
    if not compatible(install.version):
        problems.append(f"its edgeseg is {install.version}, this one {edgeseg.__version__} (install the same "
                        f"{'.'.join(edgeseg.__version__.split('.')[:2])}.x there)")
        return problems  # its doctor's verdicts may not mean what ours do
    verdicts = install.doctor.get("targets", {})
    for target in targets:
        verdict = verdicts.get(target)
        if verdict is None:
            problems.append(f"its edgeseg has no target {target}")
        elif not verdict.get("run", {}).get("ok"):
            problems.append(f"{target}: {verdict.get('run', {}).get('why')}")
    return problems
