"""The machine and the tools a bench ran with: CPU, memory, GPU, load, package versions and the
measured matrix-multiply peak (the roof of the roofline fraction)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import edgeseg
from edgeseg.optional import not_installed
from edgeseg.packages import TORCH

# The tools whose versions decide the numbers; recorded when installed.
TOOL_PACKAGES = ("numpy", "opencv-python", "opencv-python-headless", "torch", "torchvision", "onnx", "onnxruntime",
                 "ai-edge-litert", "litert-torch", "tensorflow", "tensorrt", "pycuda", "matplotlib")


# The machine facts that make two results "the same machine" (load and the matmul peak vary by the minute).
MACHINE_IDENTITY = ("cpu_model", "cpu_cores", "memory_gb", "os", "gpu")


def machine_identity(machine: dict[str, Any]) -> dict[str, Any]:
    """The part of a machine block that names the machine, not its moment."""
    return {k: machine.get(k) for k in MACHINE_IDENTITY}


def usable_cores() -> int:
    """The cores this process may run on (its affinity), which is what threads can use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def emulation(cpuinfo: str | None = None, machine: str | None = None) -> str | None:
    """How this process is emulated, or None on real hardware.

    qemu-user runs an arm64 program on an x86 CPU and passes the host's /proc/cpuinfo through: an
    aarch64 process that reads x86 vendor and flag lines there is not on an arm64 CPU, and its
    latencies are 10-30x a device's.
    """
    machine = machine or platform.machine()
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    x86_host = any(line.split(":", 1)[0].strip() == "vendor_id" for line in cpuinfo.splitlines())
    if machine.lower() in ("aarch64", "arm64", "armv7l", "armv8l") and x86_host:
        return f"qemu-user: {machine} code on an x86-64 CPU (/proc/cpuinfo is the host's); latency is not a device's"
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, GPU (if any), OS and load: what a reader needs to weigh the numbers."""
    cpu_model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu_model": cpu_model,
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": platform.platform(),
        "gpu": gpu_info(),
        "emulation": emulation(),
    }
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages * page_size / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    return info


def gpu_info() -> list[dict[str, str]]:
    """NVIDIA GPUs as `nvidia-smi` lists them; empty where there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def tool_versions() -> dict[str, str]:
    """Versions of Python, edgeseg and every installed package in TOOL_PACKAGES (read, never imported)."""
    versions = {"python": platform.python_version(), "edgeseg": edgeseg.__version__}
    for name in TOOL_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def matmul_peak_gflops(threads: int, size: int = 1024, repeats: int = 10) -> dict[str, Any]:
    """This machine's measured float32 matrix-multiply throughput: the roof in the roofline fraction.

    The best of `repeats` products of two `size`-square matrices through torch (oneDNN/MKL, the
    same kernels family the CPU backends use); best, not mean, because the roof is what the
    hardware can do when nothing else interferes. A device install has no torch: then there is no
    peak (`gflops_per_s` None) and `reason` says why, and no row gets a roofline fraction.
    """
    try:
        import torch
    except ImportError:
        return {"gflops_per_s": None, "method": None, "threads": threads,
                "reason": f"{not_installed(TORCH)}: the CPU matmul peak is measured with torch.mm"}

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(size, size)
        b = torch.randn(size, size)
        for _ in range(2):
            torch.mm(a, b)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return {"gflops_per_s": round(2 * size**3 / best / 1e9, 2),
            "method": f"torch.mm float32 {size}x{size}, best of {repeats}",
            "threads": threads}
