"""The test figures agree with each other: the confusion matrix and the accuracy count the
same top-1 predictions, even among tied (bf16) logits."""

from __future__ import annotations

import torch
from torch import nn

from kdlab.engine.metrics import evaluate
from kdlab.engine.objective import CrossEntropy


def test_tied_logits_give_one_accuracy_in_the_matrix_and_the_counter():
    """Rounded bf16 logits tie often; argmax and topk then may pick different classes: both
    figures must come from one pick."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(600, 10, generator=generator) * 2).round().to(torch.bfloat16)
    top = logits.max(dim=1, keepdim=True).values
    tied = (logits == top).sum(dim=1) > 1
    assert tied.sum() > 50  # many rows with a tie at the top
    # Every label is the first of its row's maxima: a pick among ties that is not the first
    # (topk's on the CPU) misses where the first (argmax's) hits.
    labels = (logits == top).int().argmax(dim=1)
    batches = list(zip(logits.split(64), labels.split(64), strict=True))
    # The model is the identity: its "images" are the logits themselves.
    result = evaluate(nn.Identity(), CrossEntropy(), batches, torch.device("cpu"), "fp32", 10)
    confusion = result["confusion"]
    assert confusion.sum().item() == 600
    assert confusion.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()
    assert result["acc"] == 100.0 * confusion.trace().item() / 600
    picked = logits.float().topk(5, dim=1).indices[:, 0]  # one of the tied maxima
    assert logits[torch.arange(600), picked].tolist() == top.squeeze(1).tolist()
