"""Factor Transfer (FT): a paraphraser, trained first as an autoencoder of the teacher's last
stage, gives the teacher's factors; a translator on the student learns to match them.

Kim, Park, Kwak (2018), "Paraphrasing Complex Network: Network Compression via Factor
Transfer" (NeurIPS). As RepDistiller runs it (`--distill factor`): an init stage trains the
paraphraser alone on the reconstruction MSE; the main stage trains the student and the
translator on CE + 200 * FT, the paraphraser fixed.
"""

from __future__ import annotations

import logging
from itertools import pairwise

from torch import Tensor, nn

from kdlab.engine.objective import Objective, StepOutput
from kdlab.methods.base import InitStage, InitStageMethod, Outputs, register
from kdlab.methods.hint import hint_mse_loss
from kdlab.methods.losses import attention_map, in_compute_dtype, match_spatial

log = logging.getLogger("kdlab")

RATE = 0.5  # RepDistiller's k: the factors have half the teacher's channels


def ft_loss(student_factor: Tensor, teacher_factor: Tensor) -> Tensor:
    """mean over B * H*W of |f^_s - f^_t|, f^ = l2-normalise_hw(mean_c f^2), the larger map
    first average-pooled to the smaller's size: RepDistiller's FactorTransfer (p1 2, p2 1).

    The paper's |F_t/||F_t|| - F_s/||F_s|| |_1 normalises the whole factor; RepDistiller (whose
    beta 200 this is) takes the channel mean of its square first, as AT does.
    """
    f_s, f_t = match_spatial(*in_compute_dtype(student_factor, teacher_factor))
    return (attention_map(f_s, 2) - attention_map(f_t, 2)).abs().mean()


def _convs(channels: list[int], transpose: bool = False, bn: bool = False) -> nn.Sequential:
    """3x3 stride-1 (transposed) convs between consecutive widths, each then [BN,] LeakyReLU 0.1."""
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    layers: list[nn.Module] = []
    for c_in, c_out in pairwise(channels):
        layers.append(conv(c_in, c_out, 3, 1, 1))
        if bn:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.LeakyReLU(0.1, inplace=True))
    return nn.Sequential(*layers)


class Paraphraser(nn.Module):
    """RepDistiller's paraphraser (no BN): encoder C -> C -> kC -> kC, decoder back to C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        factor = int(channels * RATE)
        self.encoder = _convs([channels, channels, factor, factor])
        self.decoder = _convs([factor, factor, channels, channels], transpose=True)

    def forward(self, f: Tensor) -> tuple[Tensor, Tensor]:
        """(factor, reconstruction) of a teacher map."""
        factor = self.encoder(f)
        return factor, self.decoder(factor)


def translator(student_channels: int, teacher_channels: int) -> nn.Sequential:
    """RepDistiller's translator (with BN): the student's C_s -> C_s -> kC_t -> kC_t."""
    factor = int(teacher_channels * RATE)
    return _convs([student_channels, student_channels, factor, factor], bn=True)


@register("ft")
class FT(InitStageMethod):
    """factors of the last stage via a paraphraser trained first (Kim et al. 2018)

    RepDistiller scripts/run_cifar_distill.sh (-a 0 -b 200), FactorTransfer(), f3 both sides;
    init stage 30 epochs at lr 0.01 (helper/pretrain.py @ b84f547 for ResNet/WRN students,
    and the run's lr 0.01 of MobileNet/ShuffleNet ones): 0.2 of the reference 0.05; VGG
    students keep the run's lr 0.05 (scale 1). `ft_loss(translator(f_s), paraphraser factor of
    f_t)`; the paraphraser stays fixed in the main stage.
    """

    taps = "last"
    weight: float = 200.0
    init_lr_scale: float | None = None  # null: by the student, 1.0 for a VGG, else 0.2

    def setup(self) -> None:
        t_c, s_c = self.tapped.teacher_shapes[0][0], self.tapped.student_shapes[0][0]
        self.paraphraser = Paraphraser(t_c)
        self.translator = translator(s_c, t_c)

    def loss(self, student: Outputs, teacher: Outputs, labels: Tensor) -> Tensor:
        teacher_factor = self.paraphraser.encoder(teacher.features[0])
        return ft_loss(self.translator(student.features[0]), teacher_factor)

    def init_stage(self, model: nn.Module) -> InitStage | None:
        """The paraphraser alone, reconstructing the teacher's map (not the student's prefix)."""
        if self.init_epochs == 0:
            return None
        stage = ParaphraserInit(self)
        return InitStage(stage, (self.paraphraser,), self.init_epochs, self.paraphraser_lr_scale())

    def paraphraser_lr_scale(self) -> float:
        """loss.init_lr_scale, or RepDistiller's by the student (logged): the run's lr for a
        VGG student, 0.01 of 0.05 for the others."""
        if self.init_lr_scale is not None:
            log.info("ft: init stage at loss.init_lr_scale=%g of optim.lr", self.init_lr_scale)
            return self.init_lr_scale
        arch = self.context.student_arch
        vgg = arch.startswith("vgg")
        scale = 1.0 if vgg else 0.2
        why = "a VGG student" if vgg else "not a VGG student"
        log.info("ft: init stage at %g of optim.lr (%s %s, RepDistiller's rule)", scale, why, arch)
        return scale

    def fixed_modules(self) -> tuple[nn.Module, ...]:
        return (self.paraphraser,)


class ParaphraserInit(Objective):
    """The init stage: the paraphraser reconstructs the teacher's map (MSE mean, RepDistiller's
    nn.MSELoss), logged as `loss_ft_rec`; the student does not run."""

    def __init__(self, method: FT) -> None:
        super().__init__()
        self.method = method  # a child: this stage's checkpoints hold the paraphraser

    def forward(
        self, model: nn.Module, x: Tensor, y: Tensor, teacher_logits: Tensor | None = None
    ) -> StepOutput:
        f_t = self.method.run_teacher(x).features[0]
        _, reconstruction = self.method.paraphraser(f_t)
        loss = hint_mse_loss(reconstruction, f_t)
        return StepOutput(None, {"loss": loss, "loss_ft_rec": loss})
