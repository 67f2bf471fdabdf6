"""The teacher as methods see it: a frozen model, run without gradients; several teachers
are one model whose logits are the weighted mean of theirs (`TeacherEnsemble`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from kdlab.models import modules_up_to


def run_prefix(model: nn.Module, point: str, x: Tensor) -> Tensor:
    """The output of feature point `point`: the model's top-level children up to it, in order."""
    for module in modules_up_to(model, point):
        x = module(x)
    return x


class TeacherEnsemble(nn.Module):
    """Several teachers as one logit teacher: z = sum_k w_k z_k, the weights summing to 1.

    Averaging logits rather than probabilities, so that every logit method takes the ensemble
    unchanged and at its own temperature: softmax(z / T) is proportional to
    prod_k softmax(z_k / T) ** w_k, the weighted geometric mean of the teachers' soft targets
    at every T. It equals their arithmetic mean (Hinton et al. 2015; You et al. KDD 2017)
    only where the teachers agree; docs/commands/distill.md says why this one was chosen.
    The sum runs in at least float32 and is returned in the teachers' own output dtype.
    """

    def __init__(self, models: Sequence[nn.Module], weights: Sequence[float]) -> None:
        super().__init__()
        if len(models) != len(weights):
            raise ValueError(f"{len(models)} teachers, {len(weights)} weights")
        self.members = nn.ModuleList(models)
        self.weights = tuple(float(w) for w in weights)

    def forward(self, x: Tensor) -> Tensor:
        logits = [member(x) for member in self.members]
        wide = torch.promote_types(logits[0].dtype, torch.float32)
        mean = sum(w * z.to(wide) for w, z in zip(self.weights, logits, strict=True))
        assert isinstance(mean, Tensor)
        return mean.to(logits[0].dtype)


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
