"""Multi-Level Logit Distillation (MLKD), `loss=mlkd`.

Jin, Wang, Lin (2023), "Multi-Level Logit Distillation" (CVPR). Student and teacher see a weak
and a strong view of every image (`data.views=weak_strong`); their predictions are aligned at
three levels, each at several temperatures (T and `loss.temperatures`): the instance (KL per
image), the batch (the B x B Gram matrix of the predictions) and the class (the C x C Gram
matrix). The teacher's weak-view confidence masks the weak-view terms (its prediction
augmentation). With P = softmax(z / T), s/t the student's/teacher's logits, w/s the views:

    instance_T = T^2 * mean_b KL(softmax(t_b / T) || softmax(s_b / T))
    batch_T    = ||P_t P_t^T - P_s P_s^T||_F^2 / B
    class_T    = ||P_t^T P_t - P_s^T P_s||_F^2 / C
    L = ce_weight * (CE(s_w, y) + CE(s_s, y))
        + weight * [ m * sum_T instance_T(w) + sum_T instance_T(strong pair)
                     + m * sum_T batch_T(w) + m_c * sum_T class_T(w) ]

m = the fraction of images whose teacher confidence max_c p_bc (weak view, T = 1) is at most
the batch's median, m_c the fraction of classes whose summed probability sum_b p_bc is at most
the classes' median (np.percentile 50: linear interpolation).

Follows Jin-Ying/Multi-Level-Logit-Distillation@5ee473fcf193dfb00a0598b64d0acfe6ad58a482,
`mdistiller/distillers/KD_ours.py` (the loss) and `mdistiller/engine/trainer.py` (AugTrainer:
the loss parts summed). Kept as the official computes it, so its figures carry over:
1. The masks act as scalars m and m_c: the official multiplies each batch-mean term by its
   mask and takes the mean (the per-sample `reduce=False` is commented out there).
2. In the strong-view sum, the 4th and 5th temperatures (2 and 6) take the weak pair
   (`loss.official_strong_kd=false`: the strong pair at every temperature).
3. The strong view's batch and class terms, computed but never returned there, are left out.
`loss.standardize` z-scores the logits of the instance terms only, as Sun et al.'s MLKD
(sunshangquan/logit-standardization-KD@6083e2d, `mdistiller/distillers/MLKD.py`).
Departures (numerics only): the medians by torch.quantile on the device (numpy there), the KL
from two log_softmax (softmax and kl_div's xlogy there: the same value).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kdlab.errors import KdlabError
from kdlab.methods.base import LogitMethod, Outputs, register
from kdlab.methods.losses import float32_math, in_compute_dtype, kl_rows, standardize_logits
from kdlab.methods.numbers import BOUNDS, Bound


def instance_term(student_logits: Tensor, teacher_logits: Tensor, T: float) -> Tensor:
    """T^2 * mean_b KL(softmax(v_b / T) || softmax(z_b / T))."""
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    return T * T * kl_rows(F.log_softmax(z_t / T, dim=1), F.log_softmax(z_s / T, dim=1)).mean()


def gram_term(student_logits: Tensor, teacher_logits: Tensor, T: float, level: str) -> Tensor:
    """The batch level (||P_t P_t^T - P_s P_s^T||_F^2 / B) or the class level
    (||P_t^T P_t - P_s^T P_s||_F^2 / C) of P = softmax(logits / T); no T^2."""
    z_s, z_t = in_compute_dtype(student_logits, teacher_logits)
    p_s, p_t = F.softmax(z_s / T, dim=1), F.softmax(z_t / T, dim=1)
    if level == "class":
        p_s, p_t = p_s.T, p_t.T
    diff = p_t @ p_t.T - p_s @ p_s.T
    return diff.pow(2).sum() / diff.shape[0]


def confidence_fractions(teacher_logits: Tensor) -> tuple[Tensor, Tensor]:
    """(m, m_c): the fractions of images and of classes at most the median confidence of the
    teacher's predictions (softmax at T = 1)."""
    with torch.no_grad():
        (z_t,) = in_compute_dtype(teacher_logits)
        p = F.softmax(z_t, dim=1)
        fractions = []
        for confidence in (p.max(dim=1).values, p.sum(dim=0)):
            masked = confidence <= torch.quantile(confidence, 0.5)
            fractions.append(masked.to(z_t.dtype).mean())
    return fractions[0], fractions[1]


@float32_math
def mlkd_terms(
    student: tuple[Tensor, Tensor],
    teacher: tuple[Tensor, Tensor],
    temperatures: list[float],
    standardize: bool = False,
    official_strong_kd: bool = True,
) -> dict[str, Tensor]:
    """MLKD's three levels (before `weight`) from the (weak, strong) logits of each side:
    loss_mlkd_instance = m * sum_T instance_T(w) + sum_T instance_T(strong pair),
    loss_mlkd_batch = m * sum_T batch_T(w), loss_mlkd_class = m_c * sum_T class_T(w), and
    their sum loss_mlkd (the module doc)."""
    s_w, s_s = student
    t_w, t_s = teacher[0].detach(), teacher[1].detach()
    m, m_c = confidence_fractions(t_w)
    z = [s_w, s_s, t_w, t_s]
    if standardize:  # the instance terms only (Sun et al.'s MLKD)
        z = [standardize_logits(v) for v in z]
    zs_w, zs_s, zt_w, zt_s = z
    weak = sum(instance_term(zs_w, zt_w, T) for T in temperatures)
    strong = sum(
        instance_term(zs_w, zt_w, T)
        if official_strong_kd and k in (3, 4)
        else instance_term(zs_s, zt_s, T)
        for k, T in enumerate(temperatures)
    )
    instance = m * weak + strong
    batch = m * sum(gram_term(s_w, t_w, T, "batch") for T in temperatures)
    classes = m_c * sum(gram_term(s_w, t_w, T, "class") for T in temperatures)
    return {
        "loss_mlkd": instance + batch + classes,
        "loss_mlkd_instance": instance,
        "loss_mlkd_batch": batch,
        "loss_mlkd_class": classes,
    }


@register("mlkd")
class MLKD(LogitMethod):
    """multi-level (instance, batch, class) logits on weak and strong views (Jin et al. 2023)

    Multi-Level-Logit-Distillation@5ee473f: configs/cifar100/ours/*.yaml set no KD section, so
    mdistiller/engine/cfg.py's KD.TEMPERATURE 4 (the top-level T), CE_WEIGHT 0.1 and KD_WEIGHT
    0.9 (`loss.weight`) hold; temperatures T, 3, 5, 2, 6 (KD_ours.py); trained on
    `data.views=weak_strong` (mdistiller/dataset/cifar100.py: the strong view adds
    RandAugment and Cutout).
    """

    uses_views: ClassVar[int] = 2
    ce_weight: float = 0.1
    weight: float = 0.9  # the official KD_WEIGHT, on every MLKD term
    kd_weight: ClassVar[float]
    temperatures: list[float] = [3.0, 5.0, 2.0, 6.0]  # noqa: RUF012 (copied per config) after T
    official_strong_kd: bool = True  # the strong sum's T 2 and 6 terms on the weak pair
    standardize: bool = False  # z-score the instance terms' logits (Sun et al. 2024)
    # 4 temperatures or more with official_strong_kd (its strong sum reads the 4th and 5th)
    bounds: ClassVar[tuple[Bound, ...]] = BOUNDS["mlkd"]

    @classmethod
    def check(cls, settings: Any) -> None:
        if not settings.temperatures or min(settings.temperatures) <= 0:
            raise KdlabError(
                f"loss.temperatures must list positive temperatures, got {settings.temperatures}"
            )

    def loss(
        self, student: list[Outputs], teacher: list[Outputs], labels: Tensor
    ) -> dict[str, Tensor]:
        temperatures = [self.T, *self.temperatures]
        logits = [tuple(view.logits for view in side) for side in (student, teacher)]
        return mlkd_terms(*logits, temperatures, self.standardize, self.official_strong_kd)

    def combine(
        self, student: list[Outputs], teacher: Any, labels: Tensor, term: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        hard = sum(self.cross_entropy(view.logits, labels) for view in student)
        loss = self.ce_weight * hard + self.weight * term["loss_mlkd"]
        return {"loss": loss, "loss_hard": hard, **term}

    def split(self, losses: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return self.ce_weight * losses["loss_hard"], self.weight * losses["loss_mlkd"]
