"""data.decode=device: streamed files read by the workers, decoded (nvJPEG on CUDA) and cut on
the training device. On a CPU the same code runs with libjpeg-turbo, so its batches must be
exactly the host path's; CUDA is not needed (nor available) here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from kdlab.data.settings import decodes_on_device
from kdlab.errors import KdlabError
from test_augment import folder_data, write_jpegs


def batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize(("channels", "workers"), [(3, 0), (1, 0), (3, 2)])
def test_device_decoding_gives_the_host_paths_batches_exactly(tmp_path, channels, workers):
    """Also through DataLoader workers: whole batches of file payloads cross the process
    boundary (by value: as tensors, each would take a file descriptor)."""
    root = write_jpegs(tmp_path / "f")
    Image.fromarray(np.full((40, 30, 3), 90, np.uint8)).save(root / "train" / "cat" / "x.png")
    kw = {"in_memory_max_mb": 0, "channels": channels, "num_workers": workers}
    host, device = folder_data(root, decode="host", **kw), folder_data(root, decode="device", **kw)
    assert host.train.finish is None and device.train.finish is not None
    for split in ("train", "test"):
        expected, got = batches(getattr(host, split)), batches(getattr(device, split))
        assert len(expected) == len(got) > 0
        for (x_host, y_host), (x_dev, y_dev) in zip(expected, got, strict=True):
            assert x_dev.shape[1] == channels
            assert torch.equal(x_host, x_dev) and torch.equal(y_host, y_dev)


def test_a_file_no_decoder_reads_is_a_one_line_error_naming_it(tmp_path):
    root = write_jpegs(tmp_path / "f")
    broken = root / "test" / "dog" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    data = folder_data(root, decode="device", in_memory_max_mb=0)
    with pytest.raises(KdlabError, match=r"cannot read image .*broken\.jpg.*fix or delete"):
        batches(data.test)


def test_auto_decodes_on_cuda_only_and_a_bad_choice_is_named():
    assert decodes_on_device("auto", torch.device("cuda")) is True
    assert decodes_on_device("auto", torch.device("cpu")) is False
    assert decodes_on_device("device", torch.device("cpu")) is True
    assert decodes_on_device("host", torch.device("cuda")) is False
    with pytest.raises(KdlabError, match=r"data\.decode must be one of auto, host, device"):
        decodes_on_device("gpu", torch.device("cpu"))
