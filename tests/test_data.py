"""The data package: augmentation, loaders, splits, and every data set on tiny generated data."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from kdlab.data import build_data
from kdlab.data.augment import crop_flip, draw_crop_flip, random_crop_flip
from kdlab.data.cifar_archive import write_cifar10, write_cifar100
from kdlab.data.device_loader import DeviceLoader
from kdlab.data.normalize import Normalizer, channel_stats
from kdlab.data.resized_crop import resize_center_crop
from kdlab.data.schedule import EvalSchedule, TrainSchedule
from kdlab.data.seeding import seeded_generator
from kdlab.data.splits import balanced_subset, stratified_split
from kdlab.data.synthetic import CLASS_NAMES, SyntheticConfig, generate, load
from kdlab.errors import KdlabError

CPU = torch.device("cpu")


def build(cfg: dict, **kwargs):
    args = {"batch_size": 4, "eval_batch_size": 8, "device": CPU, "seed": 0, **kwargs}
    return build_data(cfg, **args)


# --- augmentation -----------------------------------------------------------------------------


def test_every_crop_is_the_window_of_the_zero_padded_image_and_flips_mirror_it():
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 6, 7), dtype=torch.uint8, generator=gen)
    dy, dx, flip = draw_crop_flip(16, 4, gen)
    out = crop_flip(images, dy, dx, flip, 4)
    unflipped = crop_flip(images, dy, dx, torch.zeros_like(flip), 4)
    padded = F.pad(images, (4, 4, 4, 4))
    assert out.shape == images.shape and out.dtype == torch.uint8
    for i in range(16):
        window = padded[i, :, dy[i] : dy[i] + 6, dx[i] : dx[i] + 7]
        assert torch.equal(unflipped[i], window)
        assert torch.equal(out[i], window.flip(-1) if flip[i] else window)
    assert torch.equal(out[flip], unflipped[flip].flip(-1))


def test_drawn_views_cover_the_offset_range_and_both_flips():
    dy, dx, flip = draw_crop_flip(4000, 4, seeded_generator(1))
    assert set(dy.tolist()) == set(range(9)) == set(dx.tolist())
    assert 0.45 < flip.float().mean() < 0.55


def test_no_padding_and_no_flip_is_the_identity():
    images = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    zero = torch.zeros(50, dtype=torch.long)
    assert torch.equal(crop_flip(images, zero, zero, zero.bool(), 0), images)
    unpadded = random_crop_flip(images, 0, seeded_generator(0))  # only flips are left
    flipped = [not torch.equal(a, b) for a, b in zip(unpadded, images, strict=True)]
    assert 0 < sum(flipped) < 50
    assert all(
        torch.equal(a, b.flip(-1) if f else b)
        for a, b, f in zip(unpadded, images, flipped, strict=True)
    )


# --- device-resident loader -------------------------------------------------------------------


def indexed_images(n: int, size: int = 16) -> torch.Tensor:
    """Constant images whose channels 0 and 1 spell their index (readable after any crop)."""
    index = torch.arange(n)
    planes = torch.stack([index // 256, index % 256, torch.full_like(index, 7)], 1)
    return planes.to(torch.uint8).view(n, 3, 1, 1).expand(n, 3, size, size).contiguous()


def read_index(x: torch.Tensor) -> torch.Tensor:
    """Indices of a batch of `indexed_images` normalised with mean 0 and std 1."""
    centre = (x[:, :2, 8, 8] * 255).round().long()
    return centre[:, 0] * 256 + centre[:, 1]


def device_loader(n=64, batch=8, *, seed=0, augment=True, rank=0, world=1, eval_=False, **kw):
    images, labels = indexed_images(n), torch.arange(n) % 5
    if eval_:
        schedule = EvalSchedule(n, batch, rank=rank, world_size=world)
    else:
        pad = 4 if augment else None
        schedule = TrainSchedule(n, batch, seed=seed, augment_pad=pad, rank=rank, world_size=world)
    normalize = Normalizer((0, 0, 0), (1, 1, 1), CPU, **kw)
    return DeviceLoader(images, labels, schedule, normalize, CPU)


def epoch_indices(loader, epoch=0) -> list[torch.Tensor]:
    loader.set_epoch(epoch)
    return [read_index(x) for x, _ in loader]


def test_batches_have_the_promised_shape_dtype_layout_and_labels():
    loader = device_loader(channels_last=True)
    assert len(loader) == 8 and loader.num_samples == 64
    for x, y in loader:
        assert x.shape == (8, 3, 16, 16) and x.dtype == torch.float32
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.shape == (8,)
        assert torch.equal(y, read_index(x) % 5)  # labels travel with their (augmented) images


def test_normalisation_uses_the_given_mean_and_std():
    images = torch.randint(0, 256, (12, 3, 4, 4), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    loader = DeviceLoader(
        images,
        torch.zeros(12, dtype=torch.long),
        EvalSchedule(12, 12),
        Normalizer(mean, std, CPU),
        CPU,
    )
    ((x, _),) = list(loader)
    expected = (images / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    assert torch.allclose(x, expected, atol=1e-5)


def test_an_unaugmented_epoch_serves_every_sample_once_in_a_new_order_each_epoch():
    loader = device_loader(augment=False)
    first, again, second = (
        epoch_indices(loader, 0),
        epoch_indices(loader, 0),
        epoch_indices(loader, 1),
    )
    assert sorted(torch.cat(first).tolist()) == list(range(64))
    assert sorted(torch.cat(second).tolist()) == list(range(64))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.cat(second))


def test_an_epoch_is_a_pure_function_of_seed_and_epoch():
    def epoch(loader, e):
        loader.set_epoch(e)
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch(device_loader(seed=3), 2), epoch(device_loader(seed=3), 2))
    assert not torch.equal(epoch(device_loader(seed=3), 2), epoch(device_loader(seed=4), 2))
    state = torch.random.get_rng_state()
    epoch(device_loader(), 0)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is never used


def test_the_last_partial_train_batch_is_dropped():
    loader = device_loader(n=70, batch=8)
    assert len(loader) == 8 and loader.num_samples == 64
    assert sum(len(y) for _, y in loader) == 64


def test_ddp_train_shards_are_disjoint_equal_and_together_the_single_process_batch():
    ranks = [device_loader(n=100, batch=8, rank=r, world=3) for r in range(3)]
    assert {len(r) for r in ranks} == {4} and {r.num_samples for r in ranks} == {32}
    shards = [epoch_indices(r, 5) for r in ranks]
    flat = torch.cat([torch.cat(s) for s in shards]).tolist()
    assert len(set(flat)) == len(flat) == 96
    single = epoch_indices(device_loader(n=100, batch=24), 5)  # same global batch of 24
    for step in range(4):
        together = torch.cat([s[step] for s in shards])
        assert sorted(together.tolist()) == sorted(single[step].tolist())


def test_ddp_eval_shards_cover_everything_once_with_equal_batch_counts():
    ranks = [device_loader(n=21, batch=4, rank=r, world=2, eval_=True) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    assert [r.num_samples for r in ranks] == [11, 10]
    served = [i for r in ranks for b in epoch_indices(r) for i in b.tolist()]
    assert sorted(served) == list(range(21))


# --- subsets and splits -----------------------------------------------------------------------


def test_balanced_subset_takes_equal_counts_per_class_deterministically():
    labels = torch.arange(1000) % 10
    labels[:300] = 0  # class 0 is over-represented
    pick = balanced_subset(labels, 105, [str(c) for c in range(10)], seeded_generator(0), "k")
    counts = torch.bincount(labels[pick], minlength=10)
    assert counts.sum() == 105 and counts.max() - counts.min() <= 1 and counts.min() == 10
    assert len(set(pick.tolist())) == 105
    again = balanced_subset(labels, 105, [str(c) for c in range(10)], seeded_generator(0), "k")
    assert torch.equal(pick, again)


def test_balanced_subset_refuses_sizes_the_data_cannot_give():
    labels = torch.tensor([0] * 50 + [1] * 3)
    with pytest.raises(KdlabError, match="larger than the split"):
        balanced_subset(labels, 54, ["a", "b"], seeded_generator(0), "data.train_size")
    with pytest.raises(KdlabError, match=r"class 'b'.*only 3"):
        balanced_subset(labels, 20, ["a", "b"], seeded_generator(0), "data.train_size")


def test_stratified_split_holds_out_the_fraction_of_every_class():
    labels = torch.cat([torch.zeros(60), torch.ones(40), torch.full((20,), 2)]).long()
    kept, held = stratified_split(labels, 0.25, 3, seeded_generator(0))
    assert torch.bincount(labels[held]).tolist() == [15, 10, 5]
    assert not set(kept.tolist()) & set(held.tolist())
    assert sorted(kept.tolist() + held.tolist()) == list(range(120))
    other, _ = stratified_split(labels, 0.25, 3, seeded_generator(1))
    assert not torch.equal(kept, other)


def test_build_holds_out_a_stratified_val_split_from_train():
    data = build({"name": "synthetic", "train_size": 160, "test_size": 50, "val_split": 0.004})
    assert data.train.num_samples == 160 and data.val.num_samples == 40
    assert torch.bincount(torch.cat([y for _, y in data.val])).tolist() == [4] * 10
    assert data.test.num_samples == 50
    assert build({"name": "synthetic", "train_size": 40, "val_split": 0}).val is None


def image_keys(loader) -> set[bytes]:
    """Every image a loader serves, as bytes (unaugmented, mean 0 / std 1: the raw pixels)."""
    return {x.numpy().tobytes() for batch, _ in loader for x in (batch * 255).round()}


def test_every_train_size_and_seed_validates_on_the_same_images_and_trains_on_none():
    raw = {"name": "synthetic", "val_split": 0.01, "augment": False, "test_size": 10}
    stats = {"mean": [0, 0, 0], "std": [1, 1, 1]}
    small = build({**raw, **stats, "train_size": 100}, seed=0)
    large = build({**raw, **stats, "train_size": 400}, seed=7)
    assert image_keys(small.val) == image_keys(large.val)
    assert len(image_keys(small.val)) == 100  # 1% of the full 10,000 synthetic images
    for run in (small, large):
        assert not image_keys(run.train) & image_keys(small.val)


def test_each_epoch_leaves_out_only_the_last_partial_batch_and_says_how_many():
    data = build({"name": "synthetic", "train_size": 90, "val_split": 0}, batch_size=32)
    assert (data.train_images, data.dropped, data.train.num_samples) == (90, 26, 64)
    assert build({"name": "synthetic", "train_size": 96, "val_split": 0}).dropped == 0


# --- synthetic --------------------------------------------------------------------------------


def test_synthetic_is_deterministic_balanced_and_separate_from_its_test_split():
    a, b = generate(300, stream=1), generate(300, stream=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.shape == (300, 3, 32, 32) and a.images.dtype == torch.uint8
    assert torch.bincount(a.labels).tolist() == [30] * 10
    assert not torch.equal(generate(300, stream=2).images, a.images)
    assert len(CLASS_NAMES) == len(set(CLASS_NAMES)) == 10


def test_each_load_of_the_synthetic_set_is_its_own_copy_of_the_generated_images():
    """Generated once per process: what one run does to its images never reaches the next."""
    first = load(SyntheticConfig(name="synthetic"))
    expected = generate(first.train.labels.numel(), stream=1)
    first.train.images.zero_()
    first.test.labels.fill_(3)
    second = load(SyntheticConfig(name="synthetic"))
    assert torch.equal(second.train.images, expected.images)
    assert torch.equal(second.test.labels, generate(second.test.labels.numel(), stream=2).labels)


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_stats_are_the_population_mean_and_std_of_each_channel(channels):
    g = torch.Generator().manual_seed(channels)
    images = torch.randint(0, 256, (37, channels, 9, 11), generator=g, dtype=torch.uint8)
    images[:, 0] //= 4  # channels of different spreads
    mean, std = channel_stats(images)
    pixels = images.transpose(0, 1).flatten(1).double() / 255
    assert mean == pytest.approx(pixels.mean(1).tolist(), rel=1e-12)
    assert std == pytest.approx(pixels.std(1, correction=0).tolist(), rel=1e-12)
    flat = torch.full((2, channels, 3, 3), 9, dtype=torch.uint8)
    assert channel_stats(flat)[1] == [1e-3] * channels  # a constant channel: the floor


def test_synthetic_bundle_ignores_the_training_seed_and_normalises_with_train_stats():
    cfg = {
        "name": "synthetic",
        "test_size": 20,
        "val_split": 0,
        "augment": False,
    }
    sizes = {"batch_size": 10_000, "eval_batch_size": 100}  # one batch of all train images
    one, two = build(cfg, seed=0, **sizes), build(cfg, seed=9, **sizes)
    (x1,), (x2,) = ([x for x, _ in d.test] for d in (one, two))
    assert torch.equal(x1, x2)
    ((x, _),) = list(one.train)
    assert x.mean((0, 2, 3)).abs().max() < 1e-4 and (x.std((0, 2, 3)) - 1).abs().max() < 1e-2
    assert one.class_names == CLASS_NAMES and one.num_classes == 10 and one.image_size == 32


def test_synthetic_images_are_served_resized_to_data_image_size():
    """Rendered at 32 px; data.image_size resizes them (antialiased, as torchvision's Resize):
    the test suite trains at 16 px, a quarter of the arithmetic."""
    cfg = {"name": "synthetic", "train_size": 40, "test_size": 20, "val_split": 0}
    cfg |= {"augment": "none", "mean": [0, 0, 0], "std": [1, 1, 1]}
    ((small, labels),) = build({**cfg, "image_size": 16}, eval_batch_size=100).test
    ((full, full_labels),) = build(cfg, eval_batch_size=100).test
    assert small.shape == (20, 3, 16, 16) and full.shape == (20, 3, 32, 32)
    assert torch.equal(labels, full_labels)
    pixels = (full * 255).round().to(torch.uint8)
    assert torch.equal((small * 255).round().to(torch.uint8), resize_center_crop(pixels, 16, 16))


# --- CIFAR ------------------------------------------------------------------------------------


def served(loader) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images and labels back from a loader normalised with mean 0, std 1."""
    xs, ys = zip(*loader, strict=True)
    images = (torch.cat(xs) * 255).round().to(torch.uint8).numpy()
    return images, torch.cat(ys).numpy()


def cifar_cfg(name: str, root: Path, **kw) -> dict:
    return {
        "name": name,
        "root": str(root),
        "verify_md5": False,
        "val_split": 0,
        "augment": False,
        "mean": [0, 0, 0],
        "std": [1, 1, 1],
        **kw,
    }


@pytest.mark.parametrize("name, write", [("cifar10", write_cifar10), ("cifar100", write_cifar100)])
def test_cifar_archive_is_extracted_and_round_trips_exactly(tmp_path, name, write):
    written = write(tmp_path)
    data = build(cifar_cfg(name, tmp_path), batch_size=2, eval_batch_size=7)
    assert data.class_names == written.class_names and data.num_classes == len(written.class_names)
    images, labels = served(data.test)  # unshuffled: archive order
    np.testing.assert_array_equal(images, written.test_images)
    np.testing.assert_array_equal(labels, written.test_labels)
    images, labels = served(data.train)  # shuffled: put back in order by the image's tag
    order = np.argsort(images[:, 0, 0, 0])
    np.testing.assert_array_equal(images[order], written.train_images)
    np.testing.assert_array_equal(labels[order], written.train_labels)


def test_cifar_subsets_are_class_balanced(tmp_path):
    write_cifar100(tmp_path, train=400)  # 4 images of each class; the test split 1 of each
    data = build(
        cifar_cfg("cifar100", tmp_path, train_size=100, test_size=50, val_split=0.25),
        batch_size=10,
        eval_batch_size=10,
    )
    assert data.train.num_samples == data.val.num_samples == 100
    assert sorted(served(data.val)[1].tolist()) == list(range(100))
    test_labels = served(data.test)[1].tolist()
    assert len(test_labels) == len(set(test_labels)) == 50


def test_cifar_md5_check_rejects_a_home_made_archive(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(KdlabError, match=r"md5.*verify_md5=false"):
        build(cifar_cfg("cifar10", tmp_path, verify_md5=True))


def test_cifar_offline_fails_fast_with_a_one_line_error(tmp_path, monkeypatch):
    # A refused connection stands in for "no network" (and never downloads the real thing).
    monkeypatch.setattr(
        torchvision.datasets.CIFAR10, "url", "https://127.0.0.1:9/cifar-10-python.tar.gz"
    )
    start = time.monotonic()
    with pytest.raises(KdlabError) as err:
        build(cifar_cfg("cifar10", tmp_path / "empty", download=True))
    assert time.monotonic() - start < 10
    message = str(err.value)
    assert "\n" not in message
    assert f"CIFAR-10 not found in {tmp_path / 'empty'} and download failed" in message
    assert "put cifar-10-python.tar.gz in" in message
    assert not (tmp_path / "empty" / "cifar-10-python.tar.gz").exists()
    with pytest.raises(KdlabError, match=r"set data.download=true"):
        build(cifar_cfg("cifar10", tmp_path / "empty", download=False))


# --- image folders ----------------------------------------------------------------------------


def write_folders(root: Path, test_dir: str = "test") -> None:
    """Two classes of small PNGs of assorted sizes in train/ and `test_dir`/."""
    rng = np.random.default_rng(0)
    sizes = [(20, 30), (40, 40), (50, 21), (33, 17)]
    for split, per_class in (("train", 6), (test_dir, 3)):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                h, w = sizes[(i + c) % len(sizes)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def folder_cfg(root: Path, **kw) -> dict:
    return {
        "name": "imagefolder",
        "root": str(root),
        "image_size": 16,
        "val_split": 1 / 3,
        "num_workers": 0,
        **kw,
    }


def all_batches(data) -> list[torch.Tensor]:
    data.train.set_epoch(1)
    return [t for loader in (data.train, data.val, data.test) for batch in loader for t in batch]


def test_image_folders_stream_the_same_batches_they_serve_from_memory(tmp_path):
    write_folders(tmp_path, test_dir="val")
    in_memory = build(folder_cfg(tmp_path), batch_size=4, eval_batch_size=3)
    streamed = build(folder_cfg(tmp_path, in_memory_max_mb=0), batch_size=4, eval_batch_size=3)
    assert type(in_memory.train).__name__ == "DeviceLoader"
    assert type(streamed.train).__name__ == "StreamLoader"
    assert in_memory.class_names == ["cat", "dog"] and in_memory.image_size == 16
    assert (in_memory.train.num_samples, in_memory.val.num_samples) == (8, 4)
    assert in_memory.test.num_samples == 6
    first, second = all_batches(in_memory), all_batches(streamed)
    assert first[0].shape == (4, 3, 16, 16)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda root: None, "image folder root .* does not exist"),
        (lambda root: write_folders(root, test_dir="other"), "neither .*test nor .*val found"),
        (lambda root: (root / "test").mkdir(parents=True), "train not found"),
        (
            lambda root: (write_folders(root), (root / "test" / "cow").mkdir()),
            "test/cow is not a class",
        ),
        (
            lambda root: (write_folders(root), (root / "train" / "cow").mkdir()),
            "train/cow holds no images",
        ),
        (
            lambda root: (write_folders(root), (root / "train" / "dog" / "9.png").write_text("x")),
            "cannot read image .*train/dog/9.png",
        ),
    ],
)
def test_broken_image_folders_are_one_line_errors_naming_the_path(tmp_path, breakage, message):
    root = tmp_path / "images"
    breakage(root)
    with pytest.raises(KdlabError, match=message) as err:
        build(folder_cfg(root))
    assert "\n" not in str(err.value)


def test_a_corrupt_image_met_while_streaming_is_a_one_line_error(tmp_path):
    write_folders(tmp_path)
    (tmp_path / "test" / "cat" / "0.png").write_bytes(b"not a png")
    data = build(
        folder_cfg(tmp_path, in_memory_max_mb=0, num_workers=1, mean=[0.5] * 3, std=[0.5] * 3)
    )
    with pytest.raises(KdlabError, match=r"cannot read image .*test/cat/0.png") as err:
        list(data.test)
    assert "\n" not in str(err.value)


# --- config checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            {"name": "svhn"},
            "unknown data set 'svhn': choose one of cifar10, cifar100, imagefolder",
        ),
        ({"name": "synthetic", "val_split": 1.0}, "val_split must be in"),
        ({"name": "synthetic", "train_size": 0}, "train_size must be positive"),
        ({"name": "synthetic", "test_size": -5}, "test_size must be positive"),
        ({"name": "fashion_mnist", "image_size": 64}, "fashion_mnist images are 28x28"),
        ({"name": "synthetic", "colour": True}, "unknown data setting"),
        ({"name": "synthetic", "mean": [0.5] * 3}, "both data.mean and data.std"),
        ({"name": "imagefolder", "root": "???"}, "imagefolder needs data.root"),
    ],
)
def test_bad_settings_are_one_line_errors(cfg, message):
    with pytest.raises(KdlabError, match=message):
        build(cfg)


def test_a_train_subset_larger_than_the_data_set_is_refused(tmp_path):
    write_cifar10(tmp_path)
    with pytest.raises(KdlabError, match=r"data.train_size=21 is larger than the split"):
        build(cifar_cfg("cifar10", tmp_path, train_size=21))


def test_reading_jpegs_warns_nothing(tmp_path):
    """torchvision 0.29's deprecation of its decoders is silenced where kdlab calls them,
    even where every warning is an error."""
    from kdlab.data.jpeg import decode_rgb, read_bytes

    path = tmp_path / "red.jpg"
    Image.new("RGB", (8, 6), (200, 0, 0)).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = decode_rgb(read_bytes(str(path)))
    assert image.shape == (3, 6, 8) and image[0].float().mean() > 150
