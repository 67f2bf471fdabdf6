"""Pre-activation points: a stage's map just before its ReLU, and the BatchNorm that feeds it.

OFD and ReviewKD distil the teacher's features before the ReLU (mdistiller's `preact_feats`),
and OFD's margin comes from the BN before that ReLU (`get_bn_before_relu`). A network declares
`preact_taps = {stage: (relu, bn)}` with submodule paths: the point `<stage>.preact` is the
*input* of `relu`, and `bn` is the BN whose affine parameters describe it. CIFAR ResNets: the
last block's sum before its ReLU and that block's last BN (the shortcut is left out, as in
mdistiller); WRNs: the BN-ReLU that follows the stage (the next block's, or the head's);
ShuffleNetV1: the last unit's ReLU. A stage that ends without a ReLU (MobileNetV2's linear
bottleneck, ShuffleNetV2's shuffle) is its own pre-activation: `relu` is then the module the
stage's output enters next, and `bn` may be None where no one BN describes the output.
"""

from __future__ import annotations

from torch import nn

from kdlab.errors import KdlabError

PREACT = ".preact"  # the suffix naming a stage's pre-activation point: layer1.preact


def _declared(model: nn.Module) -> dict[str, tuple[str, str | None]]:
    return dict(getattr(model, "preact_taps", {}))


def preact_points(model: nn.Module) -> tuple[str, ...]:
    """The model's pre-activation points (`<stage>.preact`) in forward order; () if none."""
    return tuple(f"{stage}{PREACT}" for stage in _declared(model))


def last_bn(model: nn.Module, path: str) -> str:
    """The path of the last BatchNorm2d inside submodule `path` (a block's closing BN)."""
    block = model.get_submodule(path)
    names = [name for name, m in block.named_modules() if isinstance(m, nn.BatchNorm2d)]
    return f"{path}.{names[-1]}"


def preact_modules(model: nn.Module, point: str) -> tuple[nn.Module, nn.BatchNorm2d | None]:
    """The module whose input is `point` (its ReLU), and the BN before it (None where the
    model names none); a one-line error listing the model's pre-activation points when it
    has no such point."""
    declared = _declared(model)
    stage = point.removesuffix(PREACT)
    if not point.endswith(PREACT) or stage not in declared:
        listing = ", ".join(preact_points(model)) or "none: it declares no BN-before-ReLU taps"
        raise KdlabError(
            f"model {type(model).__name__} has no pre-activation point '{point}' "
            f"(pre-ReLU map with its BN): choose one of {listing}"
        )
    relu, bn_path = declared[stage]
    bn = None if bn_path is None else model.get_submodule(bn_path)
    assert bn is None or isinstance(bn, nn.BatchNorm2d), f"{type(model).__name__}: {bn_path}"
    return model.get_submodule(relu), bn
