"""FitNets' regressor: the extra matrix mapping the student's guided layer onto the hint.

`none` means no extra matrix at all (note 2's question), which needs identical shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from kdlab.errors import KdlabError


def _shape(shape: torch.Size) -> str:
    return "x".join(str(s) for s in shape)


def build_regressor(
    kind: str, guided: torch.Size, hint: torch.Size, guided_name: str, hint_name: str
) -> nn.Module:
    """A conv (1x1 or 3x3) from guided (C,H,W) to hint (C',H',W'), or the identity."""
    what = f"guided '{guided_name}' is {_shape(guided)}, hint '{hint_name}' is {_shape(hint)}"
    if kind == "none":
        if guided != hint:
            raise KdlabError(
                f"fitnet.regressor=none needs equal shapes but {what}: use "
                "fitnet.regressor=conv1x1, or layers of equal shape (fitnet.guided_layer=...)"
            )
        return nn.Identity()
    (c_in, h_in, w_in), (c_out, h_out, w_out) = guided, hint
    if h_in % h_out or w_in % w_out or h_in // h_out != w_in // w_out:
        raise KdlabError(
            f"the regressor cannot map {what}: the guided map must be the hint's size or an "
            "integer multiple of it; pick other layers (fitnet.guided_layer / fitnet.hint_layer)"
        )
    kernel = 1 if kind == "conv1x1" else 3
    stride = h_in // h_out
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
