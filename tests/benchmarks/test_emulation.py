"""A bench under qemu-user says its latency measures the emulator (the arm64 device environment)."""

from __future__ import annotations

from edgeseg.benchmarks.machine import emulation
from edgeseg.benchmarks.report import machine_lines

X86_CPUINFO = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t\t: fpu vme sse2 avx2\n"
ARM_CPUINFO = "processor\t: 0\nBogoMIPS\t: 48.00\nFeatures\t: fp asimd evtstrm crc32\nCPU implementer\t: 0x41\n"


def test_aarch64_code_reading_an_x86_cpuinfo_is_emulated():
    line = emulation(X86_CPUINFO, "aarch64")
    assert line is not None and line.startswith("qemu-user: aarch64 code on an x86-64 CPU")


def test_real_hardware_is_not_emulated():
    assert emulation(ARM_CPUINFO, "aarch64") is None  # a Jetson, a phone, an arm64 server
    assert emulation(X86_CPUINFO, "x86_64") is None  # this workstation


def test_the_report_puts_the_emulation_first():
    results = {"machine": {"cpu_model": "AMD EPYC", "emulation": emulation(X86_CPUINFO, "aarch64")},
               "tools": {"python": "3.11"}}
    first = machine_lines(results)[0]
    assert first.startswith("- **EMULATED**: qemu-user: aarch64")
    assert "every latency here measures the emulator" in first
    assert not any("EMULATED" in line for line in machine_lines({"machine": {}, "tools": {}}))
