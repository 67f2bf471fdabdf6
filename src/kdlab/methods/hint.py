"""FitNets' hint as the references train it: one MSE term next to CE, with a ConvReg regressor.

Romero, Ballas, Kahou, Chassang, Gatta, Bengio (2015), "FitNets: Hints for Thin Deep Nets"
(ICLR). RepDistiller and mdistiller train the regressor jointly in one stage with an MSE mean,
a factor 2 / (B*C*H*W) from FitNets' 1/2 sum (kdlab's two-stage `kdlab fitnet` keeps that).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from kdlab.errors import KdlabError
from kdlab.methods.base import FeatureMethod, Outputs, register
from kdlab.methods.losses import in_compute_dtype


def hint_mse_loss(student_feature_regressed: Tensor, teacher_feature: Tensor) -> Tensor:
    """mean over B * C * H * W of (r(f_s) - f_t)^2 (F.mse_loss would save an inference-mode
    teacher for backward, which autograd refuses)."""
    r, t = in_compute_dtype(student_feature_regressed, teacher_feature)
    return (r - t).pow(2).mean()


def _regressor_conv(s_c: int, s_h: int, s_w: int, t_c: int, t_h: int, t_w: int) -> nn.Module:
    """The references' choice of convolution from the two spatial sizes."""
    if s_h == 2 * t_h:
        return nn.Conv2d(s_c, t_c, kernel_size=3, stride=2, padding=1)
    if 2 * s_h == t_h:
        return nn.ConvTranspose2d(s_c, t_c, kernel_size=4, stride=2, padding=1)
    if s_h >= t_h and s_w >= t_w:
        return nn.Conv2d(s_c, t_c, kernel_size=(1 + s_h - t_h, 1 + s_w - t_w))
    raise KdlabError(
        f"the hint regressor cannot map a {s_h}x{s_w} student map to a {t_h}x{t_w} teacher map:"
        " choose a student point at least as large as the teacher's, or exactly half its size"
    )


class ConvReg(nn.Module):
    """The references' regressor: conv3x3 stride 2 when s_H = 2 t_H, convT 4x4 stride 2 when
    t_H = 2 s_H, else a conv of kernel (1 + s_H - t_H, 1 + s_W - t_W); then BN and ReLU
    (`relu=False`: no ReLU, AB's connector, which maps pre-activations).

    Shapes are the (N, C, H, W) (or (C, H, W)) shapes of the student and teacher features.
    """

    def __init__(
        self, student_shape: Sequence[int], teacher_shape: Sequence[int], relu: bool = True
    ) -> None:
        super().__init__()
        s_c, s_h, s_w = student_shape[-3:]
        t_c, t_h, t_w = teacher_shape[-3:]
        self.conv = _regressor_conv(s_c, s_h, s_w, t_c, t_h, t_w)
        self.bn = nn.BatchNorm2d(t_c)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


@register("hint")
class Hint(FeatureMethod):
    """FitNets' hint of the middle stage, one stage, through a regressor (Romero et al. 2015)

    RepDistiller scripts/run_cifar_distill.sh (-b 100, hint_layer 2): f2; `hint_mse_loss`
    through a ConvReg regressor trained jointly (a parameter of this method: the stage trains
    it, checkpoints keep it).
    """

    taps = "middle"
    weight: float = 100.0

    def setup(self) -> None:
        self.regressor = ConvReg(self.tapped.student_shapes[0], self.tapped.teacher_shapes[0])

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        return hint_mse_loss(self.regressor(student.features[0]), teacher.features[0])
