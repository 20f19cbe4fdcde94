"""The machine a measurement ran on: CPU model, core count and the SIMD flags that decide how
fast CLIP runs (every bench prints this beside its absolute figures), and a process's memory as
the kernel reports it (the memory benches)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_vpopcntdq",
               "avx_vnni", "amx_bf16", "amx_tile", "sha_ni")
CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_value(key: str, text: str) -> str | None:
    return next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith(key)), None)


def process_kib(pid: int, field: str = "VmRSS") -> int | None:
    """A memory field of ``/proc/<pid>/status`` in KiB (``VmRSS``, ``VmHWM`` ...); None when
    the process, the field or /proc is not there."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    value = _cpuinfo_value(field + ":", text)
    return int(value.split()[0]) if value else None


def cpu_flags(wanted: tuple[str, ...] = SPEED_FLAGS, cpuinfo: Path = CPUINFO) -> str:
    """The flags of ``wanted`` this CPU has, e.g. ``"avx2 fma"`` (``"unknown"`` off Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return "unknown"
    flags = set((_cpuinfo_value("flags", text) or "").split())
    return " ".join(f for f in wanted if f in flags) or "none of " + ",".join(wanted)


def describe_machine(cpuinfo: Path = CPUINFO) -> str:
    """``"<model name>, <n> cores, flags: <cpu_flags>"``."""
    try:
        model = _cpuinfo_value("model name", cpuinfo.read_text()) or platform.processor()
    except OSError:
        model = platform.processor() or "unknown CPU"
    return f"{model}, {os.cpu_count()} cores, flags: {cpu_flags(cpuinfo=cpuinfo)}"
