"""Every registered data set and model, driven by the registries: a new entry is tested by
being there.

Each data set loads the tiny copy its `make_tiny` writes, in its real on-disk format, through
build_data; each model builds at 10 and 100 classes for 3- and 1-channel images and taps
every feature point it declares. Built-in entries only: plugins are not loaded here.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from kdlab.data import DATASETS, DataConfig, build_data, data_settings, dataset_spec
from kdlab.data.names import BUILT_IN as BUILT_IN_DATA
from kdlab.data.names import CHANNELS, DEFAULT_VIEWS, IMAGE_SIZES, OWN_SETTINGS
from kdlab.data.registry import (
    channels_of,
    image_size_of,
    known_class_count,
    known_class_names,
)
from kdlab.data.registry import group_options as data_group_options
from kdlab.errors import KdlabError
from kdlab.models import (
    FeatureTap,
    build_model,
    default_feature_point,
    feature_points,
    model_names,
    stage_points,
)
from kdlab.models.names import BUILT_IN as BUILT_IN_MODELS
from kdlab.models.registry import MODELS
from kdlab.runs.screen import DATA_CHECKS

DATA_FIELDS = {f.name for f in fields(DataConfig)}


def defined_in_kdlab(function) -> bool:
    """Whether a registered builder or loader (or the function a partial wraps) is kdlab's own,
    not a plugin's."""
    return getattr(function, "func", function).__module__.startswith("kdlab.")


def test_the_built_in_names_are_the_registries_own():
    """kdlab.models.names and kdlab.data.names are what the torch-free screen refuses
    `model=`, `teacher.model=` and `data=` against: exactly the entries kdlab registers."""
    assert [n for n, b in MODELS.items() if defined_in_kdlab(b.make)] == list(BUILT_IN_MODELS)
    assert [n for n, s in DATASETS.items() if defined_in_kdlab(s.load)] == list(BUILT_IN_DATA)


def test_the_built_in_data_sets_tables_are_the_registrys():
    """kdlab.data.names' tables and the screen's DATA_CHECKS, by which the torch-free screen
    checks the `data` node: each set's own keys, fixed image size (its settings' default),
    channels, and its own settings class and check."""
    for name in BUILT_IN_DATA:
        spec = DATASETS[name]
        own = [f.name for f in fields(spec.settings) if f.name not in DATA_FIELDS]
        assert tuple(own) == OWN_SETTINGS[name], name
        assert spec.image_size == IMAGE_SIZES[name], name
        if spec.image_size is not None:
            assert spec.settings(name=name).image_size == spec.image_size, name
        assert spec.channels == CHANNELS[name], name
        own = (spec.settings, spec.check) if spec.check is not None else None
        assert own == DATA_CHECKS.get(name), name


def test_every_built_in_data_set_starts_from_the_default_views():
    """The torch-free screen judges loss=mlkd's data.views by kdlab.data.names.DEFAULT_VIEWS."""
    options = data_group_options()
    assert {options[name].views for name in BUILT_IN_DATA} == {DEFAULT_VIEWS}


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_data_set_loads_its_tiny_copy(tmp_path, name):
    spec = DATASETS[name]
    assert spec.make_tiny is not None, f"data={name} has no make_tiny: add one to its entry"
    settings = data_settings({"name": name, **spec.make_tiny(tmp_path / name)})
    source = dataset_spec(name).load(settings)
    bundle = build_data(settings, batch_size=4, eval_batch_size=8, device="cpu", seed=0)
    classes = len(source.class_names)
    assert bundle.num_classes == classes == len(source.train.labels.unique()) >= 2
    assert bundle.class_names == source.class_names
    # What the pre-flight checks a teacher against, said without reading an image.
    assert known_class_count(settings) == classes
    assert known_class_names(settings) in (None, source.class_names)
    channels, size = channels_of(settings), image_size_of(settings)
    assert (bundle.in_channels, bundle.image_size) == (channels, size)
    assert bundle.val is not None, "the tiny copy leaves no image for the default val split"
    val, train_count = bundle.val.num_samples, len(source.train.labels)
    assert 0 < val < train_count
    assert bundle.train_images == (settings.train_size or train_count - val)
    assert bundle.test.num_samples == (settings.test_size or len(source.test.labels))
    for loader in (bundle.train, bundle.val, bundle.test):
        x, y = next(iter(loader))[:2]
        assert x.dtype == torch.float32 and x.shape[1:] == (channels, size, size)
        assert y.dtype == torch.int64 and 0 <= int(y.min()) <= int(y.max()) < classes


def built(name: str, num_classes: int, in_channels: int) -> torch.nn.Module:
    """The model with its default options (no pretrained weights); a model whose optional
    package is not installed (timm) is skipped."""
    try:
        return build_model(name, num_classes, in_channels).eval()
    except KdlabError as error:
        pytest.skip(str(error))


@pytest.mark.parametrize("name", model_names())
@torch.no_grad()
def test_every_model_classifies_and_taps_its_feature_points(name):
    for num_classes, in_channels, size in ((100, 3, 32), (10, 1, 28), (10, 3, 48)):
        model = built(name, num_classes, in_channels)
        points = feature_points(model)
        assert default_feature_point(model) in points
        assert set(stage_points(model)) <= set(points)
        with FeatureTap(model, list(points)) as tap:
            logits = model(torch.randn(2, in_channels, size, size))
        assert logits.shape == (2, num_classes)
        assert set(tap.features) == set(points)
        assert all(f.dim() == 4 and f.shape[0] == 2 for f in tap.features.values())
        with pytest.raises(RuntimeError):  # the stem really takes in_channels, not 3
            model(torch.randn(2, in_channels + 1, size, size))
