"""`loss=ce`: the baseline, cross-entropy on the labels and no teacher."""

from __future__ import annotations

from dataclasses import dataclass

from kdlab.engine.objective import CrossEntropy
from kdlab.methods.base import LossConfig, Method, MethodContext


@dataclass
class CeConfig(LossConfig):
    name: str = "ce"


def build(cfg: CeConfig, context: MethodContext) -> CrossEntropy:
    return CrossEntropy(context.label_smoothing)


METHOD = Method(CeConfig, build, "none", "the baseline: cross-entropy on the labels only")
