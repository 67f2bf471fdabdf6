"""The distillation commands' settings that need no registry: `teacher.*`, `stage2=` and
`fitnet.*`, apart from the registries so the CLI's torch-free screen
(kdlab.runs.screen) can type and check them before torch is imported."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kdlab.errors import KdlabError

STAGE2_MODES = ("frozen", "finetune")
REGRESSORS = ("conv1x1", "conv3x3", "none")


@dataclass
class TeacherConfig:
    # A path, or a list of paths: several teachers, whose logits the methods get averaged
    # (kdlab.methods.teacher.TeacherEnsemble). Any: OmegaConf types no str-or-list union.
    ckpt: Any = None  # a checkpoint or run dir, or several: [A,B]; null = the newest teacher run
    weights: list[float] | None = None  # several teachers' weights (summing to 1); null = equal
    model: str = "resnet_teacher"  # with ckpt=null: which `kdlab train` runs count as teachers
    search_dir: str = "outputs"  # with ckpt=null: where to look for them
    # Exact logit cache: the teacher's logits per (training image, crop/flip view), stored
    # beside its checkpoint (<ckpt>.logits/) and reused by later runs on the same images.
    cache: bool = True
    cache_dir: str | None = None  # null = beside the teacher checkpoint
    # A teacher whose bytes differ from its record (best.pt.json) is refused unless this is set.
    allow_modified: bool = False

    def checkpoints(self) -> list[str]:
        """teacher.ckpt as a list: [] when unset (the newest teacher run is searched for)."""
        if self.ckpt is None:
            return []
        return [self.ckpt] if isinstance(self.ckpt, str) else list(self.ckpt)

    def normalised_weights(self, count: int) -> list[float]:
        """The weights of `count` teachers: teacher.weights over their sum (each one finite,
        >= 0, the sum > 0: kdlab.runs.validation), equal when unset."""
        weights = [1.0] * count if self.weights is None else self.weights
        if len(weights) != count:
            raise KdlabError(
                f"teacher.weights has {len(weights)} weight(s) for {count} teacher(s): give one "
                "weight per teacher of teacher.ckpt, or none (equal weights)"
            )
        total = math.fsum(weights)
        return [float(w) / total for w in weights]


@dataclass
class Stage2Config:
    mode: str = "finetune"  # frozen | finetune


@dataclass
class FitnetConfig:
    stage1_epochs: int | None = None  # null = ceil(trainer.epochs / 8)
    hint_layer: str | None = None  # teacher feature point; null = the teacher's default
    guided_layer: str | None = None  # student feature point; null = the student's default
    # The hint loss sums over the C*H*W features of each image (FitNets' formula), so it is
    # ~1000x larger than a cross-entropy and needs a much smaller lr than stage two. Larger
    # rates grow the guided layers' weight norms (10-15x at 5e-4), which under BatchNorm all
    # but freezes them in stage two. Measured, quick preset, fitnet_student guided by
    # resnet_teacher's layer2 (64x16x16), stage2=finetune test acc: 5e-4 20.4%, 5e-5 32.9%,
    # 5e-6 54.6% (baseline 49.3%).
    stage1_lr: float = 5e-6
    regressor: str = "conv1x1"  # conv1x1 | conv3x3 | none (guided and hint shapes must match)
    finetune_lr_scale: float = 1.0  # stage2=finetune: lr factor for the pre-trained part
