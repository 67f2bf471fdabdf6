"""torchvision.io's file and JPEG calls, imported on first use.

Importing torchvision costs ~2.5 s on a small CPU (it loads torch._dynamo); a command that
fails its pre-flight, or trains on tensors already in memory, must not pay it.
"""

from __future__ import annotations

import warnings
from types import ModuleType

import torch

# torchvision 0.29 deprecates all of torchvision.io's image reading and decoding in favour
# of TorchCodec and warns on every call (~350 warnings in a test run). torchvision 0.29.1
# has no decoder that is not deprecated, and TorchCodec (FFmpeg-based) is not a dependency:
# that one warning is silenced here, the one place kdlab calls them. The filter is set on
# each call, not once: pytest (and warnings.catch_warnings) restore the filters after each
# test. Move to TorchCodec before torchvision removes these calls.
DEPRECATED = "The image decoding and encoding capabilities of TorchVision are deprecated"


def torchvision_io() -> ModuleType:
    """torchvision.io, with its deprecation warning for image decoding silenced."""
    warnings.filterwarnings("ignore", message=DEPRECATED, category=DeprecationWarning)
    import torchvision.io

    return torchvision.io


def read_bytes(path: str) -> torch.Tensor:
    """The file's bytes as a 1-D uint8 tensor."""
    return torchvision_io().read_file(path)


def decode_rgb(
    data: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu"
) -> torch.Tensor | list[torch.Tensor]:
    """JPEG bytes (one tensor or a list, decoded in one call) as uint8 (3, H, W) RGB on
    `device` (libjpeg-turbo on a CPU, nvJPEG on CUDA); RuntimeError if one cannot be read."""
    io = torchvision_io()
    return io.decode_jpeg(data, mode=io.ImageReadMode.RGB, device=device)
