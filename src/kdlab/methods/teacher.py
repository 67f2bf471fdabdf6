"""The teacher as methods see it: a frozen model, run without gradients."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdlab.models import modules_up_to


def run_prefix(model: nn.Module, point: str, x: Tensor) -> Tensor:
    """The output of feature point `point`: the model's top-level children up to it, in order."""
    for module in modules_up_to(model, point):
        x = module(x)
    return x


class FrozenTeacher:
    """A teacher that is never updated: eval mode, no grad, inference mode.

    Not an nn.Module on purpose: it stays out of the method's state_dict and `.train()`.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval().requires_grad_(False)

    def logits(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            out = self.model(x)
        return out.clone()  # an ordinary tensor again, usable by autograd-recorded ops

    def features(self, x: Tensor, point: str) -> Tensor:
        with torch.inference_mode():
            out = run_prefix(self.model, point, x)
        return out.clone()
