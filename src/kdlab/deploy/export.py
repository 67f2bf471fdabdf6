"""Export a run's selected model, checked against PyTorch before anything is kept.

The file is written to a temp name beside its target, loaded back from there by the
format's own runtime, and compared with the PyTorch model on a batch; only a file whose
metadata reads back intact and whose logits agree is renamed into place, followed by its
sidecar JSON. A failed check leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from kdlab.deploy.formats import ExportFormat
from kdlab.deploy.selected import SelectedModel
from kdlab.errors import KdlabError
from kdlab.paths import sidecar_of, write_atomic, write_text_atomic

CHECK_IMAGES = 8  # the check's batch (the graph is traced at batch 1: this tests the batch axis)
RELATIVE_TOLERANCE = 1e-4  # of the largest logit's size (at least 1)


class ExportMismatch(KdlabError):
    """The exported model computes something else than the PyTorch model (exit code 1)."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    max_abs_diff: float
    tolerance: float


def default_output(selected: SelectedModel, fmt: ExportFormat) -> Path:
    """Beside the checkpoint, named after it: run/checkpoints/best.onnx."""
    file = selected.checkpoint
    return file.with_name(file.name.removesuffix(file.suffix) + fmt.suffix)


def check_batch(selected: SelectedModel, seed: int = 0) -> torch.Tensor:
    """CHECK_IMAGES random 8-bit images, normalised as the run's: inputs of the real range."""
    p = selected.preprocessing
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (CHECK_IMAGES, *p.input_shape()), generator=gen)
    return p.normalizer(torch.device("cpu"))(pixels.to(torch.uint8))


def tolerance_for(reference: torch.Tensor) -> float:
    return RELATIVE_TOLERANCE * max(1.0, float(reference.abs().max()))


def compare(
    fmt: ExportFormat, reference: torch.Tensor, exported: torch.Tensor, tolerance: float
) -> float:
    """The largest absolute difference; above `tolerance`, an ExportMismatch."""
    if exported.shape != reference.shape:
        raise ExportMismatch(
            f"the {fmt.name} model's output is {tuple(exported.shape)}, PyTorch's "
            f"{tuple(reference.shape)}: nothing written"
        )
    diff = float((exported.double() - reference.double()).abs().max())
    if not diff <= tolerance:  # NaN fails too
        raise ExportMismatch(
            f"{fmt.runtime} and PyTorch differ by up to {diff:.3g} on {len(reference)} images "
            f"(tolerance {tolerance:.3g}): the {fmt.name} export is not faithful for this "
            "model, nothing written; try another --format"
        )
    return diff


def export_model(selected: SelectedModel, fmt: ExportFormat, out: Path) -> ExportResult:
    """Write `selected`'s model as `fmt` to `out` (+ `out`.json) if its check passes."""
    fmt.check_available()
    model, metadata = selected.model, {"format": fmt.name, **selected.metadata()}
    batch = check_batch(selected)
    with torch.inference_mode():
        reference = model(batch)
    tolerance = tolerance_for(reference)
    checked: dict[str, float] = {}

    def write_checked(file: BinaryIO) -> None:
        fmt.save(model, batch[:1], metadata, file)
        file.flush()
        loaded = fmt.load(Path(file.name))
        if loaded.metadata != metadata:
            raise ExportMismatch(f"the {fmt.name} file's metadata did not read back intact")
        with torch.inference_mode():
            checked["diff"] = compare(fmt, reference, loaded.run(batch), tolerance)

    write_atomic(out, write_checked, "--out")
    check = {"images": CHECK_IMAGES, "runtime": fmt.runtime, "max_abs_diff": checked["diff"]}
    check["tolerance"] = tolerance
    record: dict[str, Any] = {**metadata, "file": out.name, "check": check}
    sidecar = sidecar_of(out)
    write_text_atomic(sidecar, json.dumps(record, indent=2) + "\n", "--out")
    return ExportResult(out, sidecar, checked["diff"], tolerance)
