"""`loss=ce`: the baseline, cross-entropy on the labels and no teacher."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import Tensor

from kdlab.methods.base import Method, Outputs, register


@register("ce")
class CE(Method):
    """the baseline: cross-entropy on the labels only"""

    ce_weight: ClassVar[float]
    kd_weight: ClassVar[float]
    weight: ClassVar[float]

    def loss(self, student: Outputs, teacher: Any, labels: Tensor) -> None:
        return None

    def combine(self, student: Outputs, teacher: Any, labels: Tensor, term: Any) -> dict:
        return {"loss": self.cross_entropy(student.logits, labels)}

    def summary_fields(self) -> dict[str, Any]:
        return {}
