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
