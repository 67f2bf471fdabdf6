"""How fast a run's selected model classifies: images/s at batch 1 (one request at a time)
and at batch 64 (throughput), on one device, fp32, inference mode, preprocessing excluded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlab.deploy.selected import load_selected
from kdlab.models import count_macs, weights_megabytes

BATCHES = (1, 64)
WARMUP = 2  # untimed forwards first: allocator, kernel selection, caches
MIN_SECONDS = 0.25  # per batch size: forwards until this long (one at least)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def images_per_second(
    model: nn.Module, input_shape: tuple[int, ...], batch: int, device: torch.device
) -> float:
    """Forwards of `batch` random inputs, repeated for MIN_SECONDS after a warm-up."""
    x = torch.randn((batch, *input_shape), device=device)
    with torch.inference_mode():
        for _ in range(WARMUP):
            model(x)
        _sync(device)
        repeats, started = 0, time.perf_counter()
        while repeats == 0 or time.perf_counter() - started < MIN_SECONDS:
            model(x)
            _sync(device)  # each batch's answer awaited, as a caller would
            repeats += 1
        elapsed = time.perf_counter() - started
    return repeats * batch / elapsed


def run_speed(run_dir: Path, device: torch.device) -> dict[str, Any]:
    """summary.json-style figures of a run's selected model: its size and MACs (for runs
    recorded before summary.json had them) and its images/s at each of BATCHES."""
    selected = load_selected(run_dir)
    model = selected.model.to(device)
    shape = selected.preprocessing.input_shape()
    figures: dict[str, Any] = {
        "weights_mb": weights_megabytes(model),
        "macs": count_macs(model, shape),
    }
    for batch in BATCHES:
        figures[f"images_per_s_b{batch}"] = images_per_second(model, shape, batch, device)
    return figures
