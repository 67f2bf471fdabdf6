"""Fine-tuning a pretrained model: its new head alone first, then the whole model.

`model.freeze_epochs=N` turns a command's one stage into two for the engine's multi-stage
runner: `head` (N epochs: only the head and the objective's own parameters train, the
backbone frozen with its BatchNorm statistics), then the command's stage for the remaining
epochs from the head stage's selected weights. The engine knows nothing of heads: it runs
two stages, resumable in either, as it runs FitNets' two.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from torch import nn

from kdlab.engine.stage import Stage
from kdlab.models import freeze_epochs, head_parameters

log = logging.getLogger("kdlab")


def backbone_modules(model: nn.Module, head: set[str], prefix: str = "") -> list[nn.Module]:
    """The largest submodules holding no head tensor: what the head stage freezes."""
    frozen: list[nn.Module] = []
    for name, child in model.named_children():
        path = f"{prefix}{name}."
        if not any(key.startswith(path) for key in head):
            frozen.append(child)
        else:
            frozen += backbone_modules(child, head, path)
    return frozen


def head_first(stage: Stage, model: nn.Module, head: set[str], epochs: int) -> list[Stage]:
    """`stage` split into a head stage of `epochs` epochs and the rest of it."""
    frozen = {id(p) for name, p in model.named_parameters() if name not in head}
    groups = [
        {**group, "params": [p for p in group["params"] if id(p) not in frozen]}
        for group in stage.param_groups
    ]
    head_stage = dataclasses.replace(
        stage,
        name="head",
        param_groups=[group for group in groups if group["params"]],
        epochs=epochs,
        frozen=[*stage.frozen, *backbone_modules(model, head)],
    )
    return [head_stage, dataclasses.replace(stage, epochs=stage.epochs - epochs)]


def fine_tuning_stages(
    stage: Stage, model: nn.Module, model_cfg: Mapping[str, Any], classes: int, channels: int
) -> list[Stage]:
    """[stage], or with model.freeze_epochs=N the head stage first (see the module doc)."""
    epochs = freeze_epochs(model_cfg)
    if not epochs:
        return [stage]
    head = head_parameters(model_cfg, classes, channels)
    log.info(
        "fine-tuning: the first %d epoch(s) train only the head (%s), the rest the whole model",
        epochs,
        ", ".join(sorted(head)),
    )
    return head_first(stage, model, head, epochs)
