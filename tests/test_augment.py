"""data.augment=imagenet, data.normalize and data.num_workers: the batched random-resized
crop against torchvision, the evaluation transform, the rules `auto` follows, the logit
cache's decision, the streamed path's crops, and one CLI run on a JPEG folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from PIL import Image

from kdlab.data import build_data, dataset_spec
from kdlab.data.augment import PadCropFlip
from kdlab.data.choices import augment_mode, normalization, run_normalization, train_augmentation
from kdlab.data.imagefolder import read_rgb, to_channels
from kdlab.data.registry import data_settings
from kdlab.data.resized_crop import (
    ResizedCropFlip,
    crop_boxes,
    draw_crops,
    eval_resize,
    resize_center_crop,
    resized_crops,
    resized_crops_each,
)
from kdlab.data.schedule import TrainSchedule
from kdlab.data.seeding import seeded_generator
from kdlab.data.settings import worker_count
from kdlab.errors import KdlabError
from kdlab.methods.logit_cache import cache_refusal

CPU = torch.device("cpu")


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=gen)


# --- the batched random-resized crop ---------------------------------------------------------


def test_the_whole_image_at_scale_1_ratio_1_is_a_plain_resize():
    draw = draw_crops(6, seeded_generator(0), flips=False, scale=(1, 1), ratio=(1, 1))
    square = images(6, 20, 20)
    boxes = crop_boxes(draw, 20, 20, ratio=(1, 1))
    assert all(
        b.tolist() == v for b, v in zip(boxes, ([0] * 6, [0] * 6, [20] * 6, [20] * 6), strict=True)
    )
    assert torch.equal(resized_crops(square, boxes, draw.flip, 20), square)  # the identity
    for size in (12, 31):  # shrinking (antialiased) and enlarging: torchvision's resize
        expected = TF.resize(square.float(), [size, size], antialias=True)
        got = resized_crops(square, boxes, draw.flip, size).float()
        assert (got - expected.round()).abs().max() <= 1


@pytest.mark.parametrize("height, width", [(40, 50), (64, 24), (17, 17)])
def test_each_crop_is_torchvisions_resized_crop_of_its_box(height, width):
    batch = images(48, height, width, seed=height)
    draw = draw_crops(48, seeded_generator(height))
    boxes = crop_boxes(draw, height, width)
    got = resized_crops(batch, boxes, draw.flip, 24)
    assert got.shape == (48, 3, 24, 24) and got.dtype == torch.uint8
    floats = resized_crops(batch.float(), boxes, draw.flip, 24)  # no rounding on the way
    each = resized_crops_each(batch, boxes, draw.flip, 24)  # what a CPU loader runs
    assert (each.int() - got.int()).abs().max() <= 1
    for i in range(48):
        top, left, h, w = (int(t[i]) for t in boxes)
        assert top >= 0 and top + h <= height and left >= 0 and left + w <= width and h * w > 0
        ref = TF.resized_crop(batch[i].float(), top, left, h, w, [24, 24], antialias=True)
        ref = ref.flip(-1) if draw.flip[i] else ref
        assert torch.allclose(floats[i].float(), ref.round(), atol=1)
        assert (got[i].int() - ref.round().int()).abs().max() <= 1


def test_boxes_follow_torchvisions_distribution_of_areas_and_ratios():
    n, height, width = 4000, 60, 80
    boxes = crop_boxes(draw_crops(n, seeded_generator(3)), height, width)
    area = (boxes[2] * boxes[3]).double() / (height * width)
    ratio = (boxes[3] / boxes[2]).double()
    torch.manual_seed(0)
    rrc, frame = T.RandomResizedCrop(8), torch.zeros(3, height, width)
    params = [rrc.make_params([frame]) for _ in range(n)]
    ref_area = torch.tensor([p["height"] * p["width"] for p in params]).double() / (height * width)
    ref_ratio = torch.tensor([p["width"] / p["height"] for p in params]).double()
    assert abs(area.mean() - ref_area.mean()) < 0.02 and abs(area.std() - ref_area.std()) < 0.02
    assert abs(ratio.log().mean() - ref_ratio.log().mean()) < 0.02
    assert area.min() >= 0.07 and area.max() <= 1 and ratio.min() > 0.7 and ratio.max() < 1.4


def test_when_no_attempt_fits_the_centre_crop_with_the_ratio_clamped_is_taken():
    draw = draw_crops(2, seeded_generator(0), scale=(2.0, 2.0))  # never fits
    top, left, h, w = crop_boxes(draw, 10, 40)
    torch.manual_seed(0)
    ref = T.RandomResizedCrop(8, scale=(2.0, 2.0)).make_params([torch.zeros(3, 10, 40)])
    assert (top.tolist(), left.tolist(), h.tolist(), w.tolist()) == (
        [ref["top"]] * 2,
        [ref["left"]] * 2,
        [ref["height"]] * 2,
        [ref["width"]] * 2,
    )


def test_the_views_of_an_epoch_are_a_pure_function_of_seed_and_epoch():
    def plan(seed: int, epoch: int):
        schedule = TrainSchedule(64, 8, seed=seed, augmentation=ResizedCropFlip(16))
        return schedule.plan(epoch)

    one, again, other = plan(0, 1), plan(0, 1), plan(0, 2)
    assert one.num_views is None and len(one.views) == 8
    assert all(
        torch.equal(a, b)
        for v, w in zip(one.views, again.views, strict=True)
        for a, b in zip(v, w, strict=True)
    )
    assert not torch.equal(one.views[0].scale, other.views[0].scale)
    batch = images(8, 20, 20)
    assert one.augment(0, batch).shape == (8, 3, 16, 16)
    assert torch.equal(one.augment(0, batch), again.augment(0, batch))


def test_evaluation_is_torchvisions_resize_and_centre_crop():
    assert (eval_resize(224), eval_resize(128), eval_resize(32)) == (256, 146, 36)
    for h, w in ((300, 200), (57, 90)):
        image = images(1, h, w)[0]
        reference = T.Compose([T.Resize(eval_resize(128)), T.CenterCrop(128)])
        assert torch.equal(resize_center_crop(image, eval_resize(128), 128), reference(image))


# --- the rules of auto, normalisation, workers ----------------------------------------------


def settings(name: str, **kw):
    return data_settings({"name": name, **({"root": "x"} if name == "imagefolder" else {}), **kw})


def test_auto_keeps_cifar_style_for_fixed_size_sets_and_crops_imagenet_style_large_folders():
    def mode(name, **kw):
        return augment_mode(settings(name, **kw), dataset_spec(name))

    assert mode("cifar10") == mode("mnist") == mode("synthetic") == "cifar"
    assert mode("imagefolder", image_size=64) == "cifar"
    assert mode("imagefolder", image_size=96) == mode("imagefolder", image_size=224) == "imagenet"
    assert mode("cifar10", augment="imagenet") == "imagenet"
    assert mode("cifar10", augment=True) == "cifar" and mode("cifar10", augment="False") == "none"
    assert train_augmentation("cifar", dataset_spec("mnist"), 28) == PadCropFlip(4, False)
    assert train_augmentation("cifar", dataset_spec("cifar10"), 32) == PadCropFlip(4, True)
    assert train_augmentation("imagenet", dataset_spec("kmnist"), 28) == ResizedCropFlip(28, False)
    assert train_augmentation("none", dataset_spec("cifar10"), 32) is None
    with pytest.raises(KdlabError, match=r"data\.augment must be one of auto, cifar, imagenet"):
        settings("cifar10", augment="autoaugment")


def test_pretrained_models_get_imagenet_statistics_and_others_their_data_sets():
    assert normalization(settings("cifar10"), use_imagenet=True) == "imagenet"
    assert normalization(settings("cifar10"), use_imagenet=False) == "dataset"
    assert (
        normalization(settings("cifar10", normalize="imagenet"), use_imagenet=False) == "imagenet"
    )
    assert normalization(settings("mnist"), use_imagenet=True) == "dataset"  # one channel
    weights = {"arch": "torchvision", "name": "resnet18", "weights": "DEFAULT"}
    assert run_normalization({"data": {"name": "cifar10", "normalize": "auto"}, "model": weights})
    assert run_normalization({"data": {"name": "cifar10"}, "model": weights}) == "dataset"  # old
    timm = {"arch": "timm", "pretrained": True}
    assert run_normalization({"data": {"name": "cifar10", "normalize": "auto"}, "model": timm})
    with pytest.raises(KdlabError, match="both set the normalisation"):
        normalization(
            settings("cifar10", normalize="imagenet", mean=[0.5] * 3, std=[0.5] * 3), False
        )
    with pytest.raises(KdlabError, match="for RGB images"):
        normalization(settings("mnist", normalize="imagenet"), False)
    with pytest.raises(KdlabError, match=r"data\.normalize must be one of"):
        settings("cifar10", normalize="mine")


def test_workers_auto_counts_the_cpus_and_a_count_is_a_count():
    assert 1 <= worker_count("auto") <= 8 and worker_count("auto", world_size=64) == 1
    assert (worker_count(0), worker_count("3")) == (0, 3)
    for bad in (-1, "many", True):
        with pytest.raises(KdlabError, match=r"data\.num_workers must be auto or a count"):
            worker_count(bad)


# --- image folders: decoding, the streamed crops, the cache ---------------------------------


def write_jpegs(root: Path, per_class: int = 4, test: int = 2) -> Path:
    """Two classes of smooth JPEGs (so decoders agree closely) of assorted sizes."""
    rng = np.random.default_rng(0)
    sizes = [(48, 64), (60, 40), (50, 50)]
    for split, count in (("train", per_class), ("test", test)):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = sizes[(i + c) % len(sizes)]
                ramp = np.linspace(0, 1, w)[None, :, None] * np.linspace(0, 1, h)[:, None, None]
                pixels = (ramp * rng.integers(60, 256, 3) + rng.integers(0, 20, (h, w, 3))) % 256
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=95)
    return root


def test_jpegs_decode_with_torchvision_io_close_to_pil_and_grey_is_pils_luminance(tmp_path):
    path = next(write_jpegs(tmp_path / "f").rglob("*.jpg"))
    rgb = read_rgb(str(path))
    pil = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert rgb.shape == pil.shape and (rgb.int() - pil.int()).abs().float().mean() < 1
    array = rgb.permute(1, 2, 0).contiguous().numpy()
    assert np.array_equal(
        to_channels(rgb, 1)[0].numpy(), np.array(Image.fromarray(array).convert("L"))
    )


def folder_data(root: Path, **kw):
    cfg = {"name": "imagefolder", "root": str(root), "image_size": 24, "val_split": 0}
    args = {"batch_size": 4, "eval_batch_size": 4, "device": CPU, "seed": 0}
    return build_data({**cfg, "augment": "imagenet", "num_workers": 0, **kw}, **args)


def test_streamed_folders_crop_the_whole_file_in_the_workers_and_evaluate_alike(tmp_path):
    root = write_jpegs(tmp_path / "f")
    memory, streamed = folder_data(root), folder_data(root, in_memory_max_mb=0)
    assert type(memory.train).__name__ == "DeviceLoader" and memory.augment == "imagenet"
    assert type(streamed.train).__name__ == "StreamLoader"
    assert memory.train.images.shape[-1] == eval_resize(24)  # the square crops are cut from
    assert all(torch.equal(a[0], b[0]) for a, b in zip(memory.test, streamed.test, strict=True))
    plan = streamed.train.schedule.plan(0)
    x, _ = next(iter(streamed.train))
    files = streamed.train._loader.dataset.files
    draw, index = plan.views[0], plan.indices[0]
    for k in range(4):
        rgb = read_rgb(files.paths[int(index[k])])
        top, left, h, w = (int(t[k]) for t in crop_boxes(draw, rgb.shape[1], rgb.shape[2]))
        view = TF.resized_crop(rgb, top, left, h, w, [24, 24], antialias=True)
        view = view.flip(-1) if draw.flip[k] else view
        assert torch.equal(streamed.train.normalize(view[None])[0], x[k])


def test_the_logit_cache_is_off_for_continuous_views_and_says_why(tmp_path):
    root = write_jpegs(tmp_path / "f")
    assert "continuous parameters" in cache_refusal(folder_data(root).train)
    assert cache_refusal(folder_data(root, augment="cifar").train) is None
    assert "in memory" in cache_refusal(folder_data(root, in_memory_max_mb=0).train)


def test_a_jpeg_folder_trains_with_imagenet_augmentation_from_the_cli(kdlab, tmp_path):
    root = write_jpegs(tmp_path / "f", per_class=6)
    run = tmp_path / "run"
    proc = kdlab(
        "train",
        "model=resnet8",
        "data=imagefolder",
        f"data.root={root}",
        "data.image_size=32",
        "data.augment=imagenet",
        "data.val_split=0",
        "trainer.batch_size=4",
        "trainer.epochs=1",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr
    assert "augment imagenet, normalisation dataset" in proc.stderr + proc.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert 0 <= summary["test_acc"] <= 100
