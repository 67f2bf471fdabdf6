"""Pre-activation points: a stage's map just before its ReLU, and the BatchNorm that feeds it.

OFD and ReviewKD distil the teacher's features before the ReLU (mdistiller's `preact_feats`),
and OFD's margin comes from the BN before that ReLU (`get_bn_before_relu`). A network declares
`preact_taps = {stage: (relu, bn)}` with submodule paths: the point `<stage>.preact` is the
*input* of `relu`, and `bn` is the BN whose affine parameters describe it. CIFAR ResNets: the
last block's sum before its ReLU and that block's second BN (the shortcut is left out, as in
mdistiller); WRNs: the BN-ReLU that follows the stage (the next block's, or the head's).
"""

from __future__ import annotations

from torch import nn

from kdlab.errors import KdlabError

PREACT = ".preact"  # the suffix naming a stage's pre-activation point: layer1.preact


def _declared(model: nn.Module) -> dict[str, tuple[str, str]]:
    return dict(getattr(model, "preact_taps", {}))


def preact_points(model: nn.Module) -> tuple[str, ...]:
    """The model's pre-activation points (`<stage>.preact`) in forward order; () if none."""
    return tuple(f"{stage}{PREACT}" for stage in _declared(model))


def preact_modules(model: nn.Module, point: str) -> tuple[nn.Module, nn.BatchNorm2d]:
    """The ReLU whose input is `point`, and the BN before it; a one-line error listing the
    model's pre-activation points when it has no such point."""
    declared = _declared(model)
    stage = point.removesuffix(PREACT)
    if not point.endswith(PREACT) or stage not in declared:
        listing = ", ".join(preact_points(model)) or "none: it declares no BN-before-ReLU taps"
        raise KdlabError(
            f"model {type(model).__name__} has no pre-activation point '{point}' "
            f"(pre-ReLU map with its BN): choose one of {listing}"
        )
    relu, bn_path = declared[stage]
    bn = model.get_submodule(bn_path)
    assert isinstance(bn, nn.BatchNorm2d), f"{type(model).__name__}.preact_taps: {bn_path}"
    return model.get_submodule(relu), bn
