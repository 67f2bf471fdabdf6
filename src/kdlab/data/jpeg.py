"""torchvision.io's file and JPEG calls, imported on first use.

Importing torchvision costs ~2.5 s on a small CPU (it loads torch._dynamo); a command that
fails its pre-flight, or trains on tensors already in memory, must not pay it.
"""

from __future__ import annotations

import torch


def read_bytes(path: str) -> torch.Tensor:
    """The file's bytes as a 1-D uint8 tensor."""
    from torchvision.io import read_file

    return read_file(path)


def decode_rgb(
    data: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu"
) -> torch.Tensor | list[torch.Tensor]:
    """JPEG bytes (one tensor or a list, decoded in one call) as uint8 (3, H, W) RGB on
    `device` (libjpeg-turbo on a CPU, nvJPEG on CUDA); RuntimeError if one cannot be read."""
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
