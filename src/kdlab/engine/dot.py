"""`optim=dot`: the Distillation-Oriented Trainer, an SGD with one momentum for the task
(cross-entropy) gradient and another for the distillation gradient.

Zhao, Cui, Song, Liang (2023), "DOT: A Distillation-Oriented Trainer" (ICCV), as
megvii-research/mdistiller@a08d46f10d6102bd6e3f258ca5ac880b020ea259 runs it
(`mdistiller/engine/dot.py`, `mdistiller/engine/trainer.py` class DOT; CIFAR-100 configs
`configs/cifar100/dot/*.yaml`: momentum 0.9, DOT.DELTA 0.075). With mu_task = momentum - delta,
mu_kd = momentum + delta and mu_mid = their mean, for every parameter p (lr, weight decay wd):

    task gradient g_t (p has one):  d = g_t + wd * p
        first step: v_t = d;  p also has g_kd: v_t = mu_task * v_t + d;  else v_t = mu_mid * v_t + d
        p <- p - lr * v_t
    distillation gradient g_kd, after every task update of the group:
        first step: v_kd = g_kd;  p also has g_t: v_kd = mu_kd * v_kd + g_kd
        else (p has no task gradient): v_kd = mu_mid * v_kd + g_kd + wd * p
        p <- p - lr * v_kd

Weight decay rides on the task momentum; no nesterov, no dampening (as the official). The
trainer hands over the two gradients as mdistiller's DOT.train_iter makes them: the
distillation part's backward, `record_distillation()`, then the task part's backward and
`step()`; a parameter "has" a gradient when its `.grad` is not None after that backward.
Departures: the distillation gradients are copied when recorded (the official keeps
references to `.grad`); several parameter groups (kdlab's decay / no-decay split) each with
the momenta of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor


class DOT(torch.optim.Optimizer):
    """SGD with separate task and distillation momenta (see the module doc)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        delta: float = 0.075,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {"lr": lr, "momentum": momentum, "delta": delta, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self._distillation: dict[Tensor, Tensor] = {}

    @torch.no_grad()
    def record_distillation(self) -> None:
        """Keep the current `.grad`s as the distillation gradients of the next `step`."""
        self._distillation = {
            p: p.grad.detach().clone()
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        }

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        """Update with the current `.grad`s as task gradients and the recorded distillation
        gradients, then forget those."""
        assert closure is None, "optim=dot takes no closure"
        distill, self._distillation = self._distillation, {}
        for group in self.param_groups:
            params = group["params"]
            task = {p: p.grad for p in params if p.grad is not None}
            for p, grad in task.items():
                self._task_update(p, grad, p in distill, group)
            for p in params:
                if p in distill:
                    self._distillation_update(p, distill[p], p in task, group)

    def _task_update(self, p: Tensor, grad: Tensor, shared: bool, group: dict) -> None:
        momentum = group["momentum"] - group["delta"] if shared else _middle(group)
        d_p = grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else grad
        state = self.state[p]
        if group["momentum"] - group["delta"] != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d_p.detach().clone()
            else:
                buf.mul_(momentum).add_(d_p)
            d_p = buf
        p.add_(d_p, alpha=-group["lr"])

    def _distillation_update(self, p: Tensor, grad: Tensor, shared: bool, group: dict) -> None:
        state = self.state[p]
        buf = state.get("momentum_kd_buffer")
        if buf is None:
            buf = state["momentum_kd_buffer"] = grad.detach().clone()
        elif shared:
            buf.mul_(group["momentum"] + group["delta"]).add_(grad)
        else:
            d_p = grad.add(p, alpha=group["weight_decay"]) if group["weight_decay"] else grad
            buf.mul_(_middle(group)).add_(d_p)
        p.add_(buf, alpha=-group["lr"])


def _middle(group: dict) -> float:
    """mu_mid = (mu_kd + mu_task) / 2, computed as the official does (the same float)."""
    return ((group["momentum"] + group["delta"]) + (group["momentum"] - group["delta"])) / 2.0
