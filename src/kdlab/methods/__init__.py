"""The distillation methods' losses as pure functions of tensors, one module per method.

Each follows its reference implementation's reduction (RepDistiller, mdistiller, the
official DIST code) so the published loss weights carry over, and computes in float32
(float64 inputs stay float64). Feature losses take one layer pair (sum them over layers),
except AB's and FSP's, which take each side's layers in order (their layers interact).
"""

from kdlab.methods.ab import ab_loss
from kdlab.methods.at import at_loss
from kdlab.methods.cc import cc_loss
from kdlab.methods.crd import contrast_loss, crd_loss
from kdlab.methods.dist import dist_loss
from kdlab.methods.dkd import dkd_loss, dkd_warmup
from kdlab.methods.fsp import fsp_loss, fsp_matrices
from kdlab.methods.ft import ft_loss
from kdlab.methods.hint import ConvReg, hint_mse_loss
from kdlab.methods.nst import nst_loss
from kdlab.methods.ofd import ofd_loss, ofd_margin
from kdlab.methods.pkt import pkt_loss
from kdlab.methods.reviewkd import ABF, hcl_loss
from kdlab.methods.rkd import rkd_loss
from kdlab.methods.sp import sp_loss
from kdlab.methods.standardize import standardize_logits
from kdlab.methods.vid import vid_loss

__all__ = [
    "ABF",
    "ConvReg",
    "ab_loss",
    "at_loss",
    "cc_loss",
    "contrast_loss",
    "crd_loss",
    "dist_loss",
    "dkd_loss",
    "dkd_warmup",
    "fsp_loss",
    "fsp_matrices",
    "ft_loss",
    "hcl_loss",
    "hint_mse_loss",
    "nst_loss",
    "ofd_loss",
    "ofd_margin",
    "pkt_loss",
    "rkd_loss",
    "sp_loss",
    "standardize_logits",
    "vid_loss",
]
