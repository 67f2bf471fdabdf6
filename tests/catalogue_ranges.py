"""The bad-input catalogue's values out of their range (kdlab.runs.validation's table of valid
ranges): each refused by the pre-flight in one line, before anything is written. A plain
table, kept apart so the catalogue module stays the size of one job."""

from __future__ import annotations

# Values out of their range (kdlab.runs.validation's table), refused by the pre-flight:
# (command, overrides separated by spaces, what the line must say).
RANGES: list[tuple[str, str, str]] = [
    ("train", "trainer.device=cuda:abc", "unknown trainer.device 'cuda:abc'"),
    ("train", "trainer.device=cuda:99", "trainer.device=cuda:99 but this machine has"),
    ("train", "trainer.num_threads=-1", "trainer.num_threads must be positive, got -1"),
    ("train", "trainer.eval_batch_size=0", "trainer.eval_batch_size must be positive, got 0"),
    ("train", "trainer.grad_clip=inf", "trainer.grad_clip must be a finite number, got inf"),
    ("train", "seed=-1", "seed must be in [0, 4294967296), got -1"),
    ("train", "optim.betas=[2,3]", "optim.betas[0] must be in [0, 1), got 2.0"),
    ("train", "optim.momentum=-1", "optim.momentum must be in [0, 1), got -1.0"),
    ("train", "optim.lr=inf", "optim.lr must be a finite number, got inf"),
    ("train", "optim.weight_decay=nan", "optim.weight_decay must be a finite number, got nan"),
    ("train", "sched.min_lr_ratio=-1", "sched.min_lr_ratio must be in [0, 1], got -1.0"),
    ("train", "sched.gamma=-1", "sched.gamma must be positive, got -1.0"),
    ("train", "sched.milestones=[0.75,0.5]", "sched.milestones must ascend, got [0.75, 0.5]"),
    ("train", "sched.milestones=[0.5,1.5]", "sched.milestones[1] (a fraction of training)"),
    ("train", "sched.pct_start=1", "sched.pct_start must be in (0, 1), got 1.0"),
    ("distill", "T=inf", "T must be a finite number, got inf"),
    ("distill", "teacher.model=nosuch", "unknown teacher.model 'nosuch'"),
    ("fitnet", "fitnet.finetune_lr_scale=-1", "fitnet.finetune_lr_scale must be >= 0, got -1.0"),
    ("distill", "loss=at loss.beta=-1", "loss.beta must be >= 0 for loss=at, got -1.0"),
    ("distill", "loss=dkd loss.warmup=-1", "loss.warmup must be >= 0 for loss=dkd, got -1"),
    ("fitnet", "loss=at", "stage two takes a logit method, not loss=at"),
    # Pretrained weights and timm names (the workspace's teacher is a resnet8 checkpoint):
    (
        "train",
        "model=torchvision model.name=shufflenet_v2_x0_5 model.weights=IMAGENET1K_V9",
        "unknown weights 'IMAGENET1K_V9' for torchvision shufflenet_v2_x0_5: choose one of "
        "DEFAULT, IMAGENET1K_V1",
    ),
    (
        "train",
        "model=torchvision model.weights=teacher/checkpoints/best.pt",
        "do not fit torchvision resnet18: 120 missing (first: conv1.weight)",
    ),
    ("train", "model=timm model.name=resnet_18", "unknown timm model 'resnet_18' (close: resnet18"),
    ("train", "model=torchvision model.freeze_epochs=1", "freezes a pretrained backbone"),
]
