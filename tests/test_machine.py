"""The machine line every bench prints beside its absolute figures."""

from __future__ import annotations

from pathlib import Path

from clipsearch.machine import cpu_flags, describe_machine


def test_flags_and_model_come_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\n"
                    "flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n")
    assert cpu_flags(cpuinfo=info) == "avx2 fma avx512f avx512_bf16"
    assert cpu_flags(("amx_bf16",), cpuinfo=info) == "none of amx_bf16"
    assert describe_machine(info).startswith("AMD EPYC 9R14, ")
    assert describe_machine(info).endswith("flags: avx2 fma avx512f avx512_bf16")
    assert cpu_flags(cpuinfo=tmp_path / "missing") == "unknown"


def test_process_memory_from_proc_status() -> None:
    import os

    from clipsearch.machine import process_kib

    rss = process_kib(os.getpid())
    if not Path("/proc/self/status").is_file():  # not Linux: nothing to read
        assert rss is None
        return
    assert rss is not None and rss > 1024  # a Python process holds more than 1 MiB
    peak = process_kib(os.getpid(), "VmHWM")
    assert peak is not None and peak >= rss
    assert process_kib(os.getpid(), "NoSuchField") is None
    assert process_kib(2**22 + 12345) is None  # beyond any pid_max: no such process
