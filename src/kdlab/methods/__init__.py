"""The distillation methods: one class per method, registered by name (`loss=NAME`).

Write a method as a class (the template: kdlab.methods.kd):

    from kdlab.methods import LogitMethod, register

    @register("mse_logits")
    class MseLogits(LogitMethod):
        '''Mean squared error between student and teacher logits.'''
        scale: float = 1.0

        def loss(self, student, teacher, labels):
            return self.scale * F.mse_loss(student.logits, teacher.logits)

Each module holds its pure loss functions (tested against independent float64 formulas)
and its class; `base` is what a method is, `registry` the `loss=` choices, `points` the
feature points a method taps, `losses` what the losses share, `teacher` the frozen teacher,
`fitnets` FitNets' hint stage, `logit_cache` the teacher's logits stored for reuse.

Its names are imported on first use (PEP 562), so `kdlab.methods.names` is read without
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdlab.lazy import names_on_first_use

if TYPE_CHECKING:
    from kdlab.methods.base import FeatureMethod, LogitMethod, Method, Outputs, register

__all__ = ["FeatureMethod", "LogitMethod", "Method", "Outputs", "register"]


__getattr__ = names_on_first_use(__name__, __all__, {"base": tuple(__all__)})
