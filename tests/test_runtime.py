"""`trainer.precision=auto`: bf16 only where the hardware computes it natively."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from harness import restored_torch
from kdlab.engine.execution import (
    native_bf16,
    resolve_precision,
    rng_state,
    set_rng_state,
    setup_runtime,
)

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


# --- CUDA state a resume may meet -------------------------------------------------------------


def pretend_gpus(monkeypatch, capabilities: list[tuple[int, int]]) -> None:
    """torch's view of a host with these GPUs (this test machine may have none); GPU 0 is
    the current device, as `torch.cuda.is_bf16_supported` assumes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(capabilities))
    monkeypatch.setattr(
        torch.cuda, "get_device_capability", lambda d=None: capabilities[torch.device(d).index or 0]
    )
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: capabilities[0] >= (8, 0)
    )
    fake = [torch.zeros(16, dtype=torch.uint8) for _ in capabilities]
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: fake)


def test_the_saved_rng_state_holds_no_per_gpu_list(monkeypatch):
    pretend_gpus(monkeypatch, [(8, 0)] * 8)
    assert set(rng_state()) == {"torch", "python"}


def test_a_checkpoint_saved_with_eight_gpus_restores_on_two(monkeypatch):
    pretend_gpus(monkeypatch, [(8, 0)] * 2)
    saved = rng_state()
    expected = torch.rand(3)
    saved["cuda"] = [torch.zeros(16, dtype=torch.uint8) for _ in range(8)]  # older checkpoints
    restored = torch.load(io.BytesIO(save_bytes(saved)), weights_only=True)
    set_rng_state(restored)
    assert torch.equal(torch.rand(3), expected)


def save_bytes(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(("index", "native"), [(0, False), (1, True)])
def test_auto_precision_asks_the_gpu_it_trains_on(monkeypatch, index, native):
    pretend_gpus(monkeypatch, [(7, 0), (8, 0)])  # a V100 as GPU 0, an A100 as GPU 1
    assert native_bf16(torch.device("cuda", index)) is native
    assert resolve_precision("auto", torch.device("cuda", index)) == ("bf16" if native else "32")


@pytest.mark.parametrize(
    ("before", "deterministic"), [((True, False), True), ((True, True), False)]
)
def test_setup_runtime_sets_determinism_warn_only_whatever_the_process_had(before, deterministic):
    """trainer.deterministic=true warns on an op without a deterministic kernel, even where the
    process had turned determinism on strictly (it raises then); false turns it off."""
    trainer = OmegaConf.create({"device": "cpu", "num_threads": 0, "deterministic": deterministic})
    with restored_torch():
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        setup_runtime(trainer, seed=0)
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        if deterministic:
            assert torch.is_deterministic_algorithms_warn_only_enabled()
