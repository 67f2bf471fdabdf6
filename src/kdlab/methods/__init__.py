"""The distillation methods' losses as pure functions of tensors, one module per method.

Each follows its reference implementation's reduction (RepDistiller, mdistiller, the
official DIST code) so the published loss weights carry over, and computes in float32
(float64 inputs stay float64). Feature losses take one layer pair: sum them over layers.
"""

from kdlab.methods.at import at_loss
from kdlab.methods.dist import dist_loss
from kdlab.methods.dkd import dkd_loss, dkd_warmup
from kdlab.methods.hint import ConvReg, hint_mse_loss
from kdlab.methods.nst import nst_loss
from kdlab.methods.ofd import ofd_loss, ofd_margin
from kdlab.methods.pkt import pkt_loss
from kdlab.methods.reviewkd import ABF, hcl_loss
from kdlab.methods.rkd import rkd_loss
from kdlab.methods.sp import sp_loss
from kdlab.methods.standardize import standardize_logits

__all__ = [
    "ABF",
    "ConvReg",
    "at_loss",
    "dist_loss",
    "dkd_loss",
    "dkd_warmup",
    "hcl_loss",
    "hint_mse_loss",
    "nst_loss",
    "ofd_loss",
    "ofd_margin",
    "pkt_loss",
    "rkd_loss",
    "sp_loss",
    "standardize_logits",
]
