"""`trainer.compile=true`: torch.compile with a clean fallback to eager execution.

torch.compile returns at once and compiles on the first call, so that is where a platform
without compile support fails (no C++ compiler for inductor, an unsupported op or Python
version). The run should not die there: the first call falls back to the eager model, once,
with a warning, and training goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

log = logging.getLogger("kdlab")


class CompiledOrEager(nn.Module):
    """Calls the compiled model; if compiling fails, the eager model from then on."""

    def __init__(self, model: nn.Module, backend: str | Callable = "inductor") -> None:
        super().__init__()
        self.model = model
        # A list keeps the compiled wrapper out of the module tree (its parameters are the
        # model's; registering it twice would only duplicate the state_dict keys).
        self._compiled: list[nn.Module] = [torch.compile(model, backend=backend)]
        self.compile_failed = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not self.compile_failed:
            try:
                return self._compiled[0](*args, **kwargs)
            except Exception as error:  # compile support varies by platform: fall back, loudly
                self.compile_failed = True
                reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
                log.warning(
                    "torch.compile failed (%s: %s); training eagerly",
                    type(error).__name__,
                    reason[:200],
                )
        return self.model(*args, **kwargs)
