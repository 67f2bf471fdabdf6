"""Fashion-MNIST, MNIST and KMNIST from idx files: tiny generated ones, and the installed copy."""

from __future__ import annotations

import dataclasses
import gzip
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from kdlab.data.idx import FASHION_MNIST_DIR, IDX_SETS, load_idx
from kdlab.data.normalize import channel_stats
from kdlab.errors import KdlabError

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
COUNTS = {"train": 30, "test": 20}


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The idx format written independently of kdlab: big-endian magic and dims, then bytes."""
    dims = np.array(array.shape, dtype=">i4").tobytes()
    return magic.to_bytes(4, "big") + dims + array.astype(np.uint8).tobytes()


def write_file(folder: Path, name: str, content: bytes, gzipped: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (f"{name}.gz" if gzipped else name)
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def write_idx_set(folder: Path, gz: str = "none", seed: int = 0) -> dict[str, np.ndarray]:
    """Four idx files in `folder`; gz = all | none | mixed (images gzipped, labels not)."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, (images_name, labels_name) in NAMES.items():
        images = rng.integers(0, 256, (COUNTS[split], 28, 28), dtype=np.uint8)
        labels = np.arange(COUNTS[split]) % 10
        rng.shuffle(labels)
        write_file(folder, images_name, idx_bytes(images, 2051), gz in ("all", "mixed"))
        write_file(folder, labels_name, idx_bytes(labels, 2049), gz == "all")
        written[f"{split}_images"], written[f"{split}_labels"] = images, labels
    return written


TORCHVISION_FOLDERS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST"}


def raw_folder(root: Path, name: str) -> Path:
    return root / TORCHVISION_FOLDERS[name] / "raw"


def error_of(name: str, root: Path, download: bool = False) -> str:
    with pytest.raises(KdlabError) as err:
        load_idx(name, root, download=download)
    message = str(err.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("name", ["fashion_mnist", "mnist", "kmnist"])
@pytest.mark.parametrize("layout", ["root", "torchvision"])
@pytest.mark.parametrize("gz", ["all", "none", "mixed"])
def test_idx_files_round_trip_exactly(tmp_path, name, layout, gz):
    folder = tmp_path if layout == "root" else raw_folder(tmp_path, name)
    written = write_idx_set(folder, gz)
    source = load_idx(name, tmp_path, download=False)
    for split in ("train", "test"):
        images, labels = getattr(source, split).images, getattr(source, split).labels
        assert images.dtype == torch.uint8 and images.shape == (COUNTS[split], 1, 28, 28)
        assert labels.dtype == torch.int64
        assert np.array_equal(images[:, 0].numpy(), written[f"{split}_images"])
        assert np.array_equal(labels.numpy(), written[f"{split}_labels"])


def test_data_set_facts(tmp_path):
    fashion, mnist, kmnist = IDX_SETS["fashion_mnist"], IDX_SETS["mnist"], IDX_SETS["kmnist"]
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert mnist.class_names == tuple("0123456789")
    assert kmnist.class_names == ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")
    assert (fashion.mean, fashion.std) == ((0.2860,), (0.3530,))
    assert (mnist.mean, mnist.std) == ((0.1307,), (0.3081,))
    assert (kmnist.mean, kmnist.std) == ((0.1918,), (0.3483,))
    assert [spec.flip for spec in (fashion, mnist, kmnist)] == [True, False, False]
    assert all(spec.channels == 1 and spec.image_size == 28 for spec in IDX_SETS.values())
    write_idx_set(tmp_path)
    source = load_idx("kmnist", tmp_path, download=False)
    assert source.class_names == list(kmnist.class_names)


def test_uncompressed_file_wins_over_its_gz(tmp_path):
    written = write_idx_set(tmp_path, "none", seed=1)
    write_idx_set(tmp_path / "other", "all", seed=2)
    for path in (tmp_path / "other").iterdir():
        path.rename(tmp_path / path.name)
    source = load_idx("mnist", tmp_path, download=False)
    assert np.array_equal(source.test.images[:, 0].numpy(), written["test_images"])


def test_missing_files_say_which_files_to_put_where(tmp_path):
    root = tmp_path / "empty"
    message = error_of("mnist", root)
    assert message.startswith(f"MNIST not found in {root}: put train-images-idx3-ubyte, ")
    assert all(name in message for pair in NAMES.values() for name in pair)
    assert f"in {root} or {root / 'MNIST' / 'raw'}" in message
    assert "set data.download=true" in message
    assert "apt-get" not in message


def test_fashion_mnist_without_the_system_copy_names_the_package(tmp_path, monkeypatch):
    absent = dataclasses.replace(IDX_SETS["fashion_mnist"], system_dir=tmp_path / "absent")
    monkeypatch.setitem(IDX_SETS, "fashion_mnist", absent)
    message = error_of("fashion_mnist", tmp_path / "empty")
    assert "Fashion-MNIST not found in" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_offline_download_fails_with_a_one_line_error(tmp_path, monkeypatch):
    # A refused connection stands in for "no network" (and never downloads the real thing).
    monkeypatch.setattr(torchvision.datasets.KMNIST, "mirrors", ["https://127.0.0.1:9/"])
    root = tmp_path / "empty"
    message = error_of("kmnist", root, download=True)
    assert f"KMNIST not found in {root} and download failed (no network?): put " in message
    assert "t10k-labels-idx1-ubyte" in message
    assert not root.exists()


def test_a_partial_set_names_the_missing_files(tmp_path):
    write_idx_set(tmp_path, "all")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    message = error_of("fashion_mnist", tmp_path, download=True)  # never replaced silently
    assert f"{tmp_path} holds only some of the Fashion-MNIST files" in message
    assert "(t10k-labels-idx1-ubyte missing" in message


IMAGES, LABELS = NAMES["test"]


def _bad_magic(path: Path) -> None:
    path.write_bytes(idx_bytes(np.zeros((20, 28, 28)), 2049))


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _too_few_labels(path: Path) -> None:
    path.write_bytes(idx_bytes(np.zeros(19), 2049))


def _wrong_size(path: Path) -> None:
    path.write_bytes(idx_bytes(np.zeros((20, 32, 32)), 2051))


def _bad_label(path: Path) -> None:
    path.write_bytes(idx_bytes(np.full(20, 10), 2049))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("damage", "file", "expected"),
    [
        (_bad_magic, IMAGES, r"is not an idx file .*magic number 2049, expected 2051"),
        (_empty, LABELS, r"is not an idx file .*magic number none, expected 2049"),
        (_truncated, IMAGES, r"is damaged: 15691 bytes, its header \(20, 28, 28\) needs 15696"),
        (_truncated, LABELS, r"is damaged: 23 bytes, its header \(20,\) needs 28"),
        (_too_few_labels, LABELS, r"holds 20 images but .*labels-idx1-ubyte 19 labels"),
        (_wrong_size, IMAGES, r"holds 32x32 images, not MNIST's 28x28"),
        (_bad_label, LABELS, r"has label 10 but MNIST has 10 classes"),
    ],
)
def test_a_damaged_file_is_a_one_line_error_naming_it(tmp_path, damage, file, expected):
    write_idx_set(tmp_path)
    damage(tmp_path / file)
    message = error_of("mnist", tmp_path)
    assert str(tmp_path / file) in message
    assert re.search(expected, message), message


def test_a_truncated_gzip_is_a_one_line_error_naming_it(tmp_path):
    write_idx_set(tmp_path, "all")
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    message = error_of("kmnist", tmp_path)
    assert message.startswith(f"cannot read {path} (")
    assert message.endswith("replace it with an intact copy")


INSTALLED = all(
    (FASHION_MNIST_DIR / f"{name}.gz").is_file() or (FASHION_MNIST_DIR / name).is_file()
    for pair in NAMES.values()
    for name in pair
)


@pytest.mark.skipif(
    not INSTALLED,
    reason=f"no Fashion-MNIST in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)",
)
def test_the_installed_fashion_mnist_loads_when_data_root_has_none(tmp_path):
    source = load_idx("fashion_mnist", tmp_path / "empty", download=False)
    assert source.train.images.shape == (60000, 1, 28, 28)
    assert source.test.images.shape == (10000, 1, 28, 28)
    assert source.class_names == list(IDX_SETS["fashion_mnist"].class_names)
    assert torch.bincount(source.train.labels).tolist() == [6000] * 10
    assert torch.bincount(source.test.labels).tolist() == [1000] * 10
    mean, std = channel_stats(source.train.images)  # the stated stats are the files' own
    assert mean == pytest.approx(IDX_SETS["fashion_mnist"].mean, abs=5e-5)
    assert std == pytest.approx(IDX_SETS["fashion_mnist"].std, abs=5e-5)
