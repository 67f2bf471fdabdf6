"""`trainer.precision=auto`: bf16 only where the hardware computes it natively."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kdlab.execution import resolve_precision

CPU = torch.device("cpu")


def cpu_flags() -> set[str]:
    """The CPU's feature flags as the kernel reports them (independent of torch)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    pytest.skip("/proc/cpuinfo lists no flags")


def test_auto_is_bf16_exactly_on_cpus_with_native_bf16():
    native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
    assert resolve_precision("auto", CPU) == ("bf16" if native else "32")


@pytest.mark.parametrize("precision", ["32", "bf16", "fp16"])
def test_explicit_precisions_are_kept(precision):
    assert resolve_precision(precision, CPU) == precision
