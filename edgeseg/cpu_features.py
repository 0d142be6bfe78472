"""What this CPU's instruction set offers, from /proc/cpuinfo (Linux); elsewhere nothing is claimed.

bf16 artifacts (OpenVINO on x86) need bfloat16 instructions: without them OpenVINO's CPU plugin
computes in f32, so a "bf16" artifact would neither run as verified nor run faster.
"""

from __future__ import annotations

from pathlib import Path

from edgeseg.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")
# x86 flags whose bfloat16 dot products OpenVINO's CPU plugin uses for its bf16 inference precision.
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The `flags` words of /proc/cpuinfo (or of `cpuinfo`); empty where there is none."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return set()
    return {word for line in cpuinfo.splitlines() if line.startswith("flags")
            for word in line.split(":", 1)[-1].split()}


def bfloat16_flags(cpuinfo: str | None = None) -> list[str]:
    """The bfloat16 instruction flags this CPU has (empty: it has none)."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in BFLOAT16_FLAGS if flag in flags]


def require_bfloat16(what: str, cpuinfo: str | None = None) -> None:
    """Raise one line when this CPU has no bfloat16 instructions."""
    if not bfloat16_flags(cpuinfo):
        raise ConfigError(f"{what}: this CPU has no bfloat16 instructions ({' or '.join(BFLOAT16_FLAGS)}); "
                          "bf16 needs a CPU that has them (use fp32 or int8 here)")
