"""The model registry, parameter budgets, shapes and named feature points."""

from __future__ import annotations

import pytest
import torch

from kdlab.errors import KdlabError
from kdlab.models import (
    FeatureTap,
    build_model,
    check_feature_point,
    count_params,
    default_feature_point,
    describe_models,
    feature_points,
    feature_shape,
    model_names,
    modules_up_to,
    stage_points,
)
from kdlab.models.channels import with_input_channels
from kdlab.models.published_sizes import REFERENCE_SIZES

# kdlab's own models: the research notes' budgets at 10 classes, (target, relative tolerance).
NOTES_TARGETS = {
    "resnet_teacher": (1_351_100, 0.05),
    "cnn_student": (175_000, 0.05),
    "fitnet_student": (306_000, 0.05),
}
KDLAB_MODELS = [name for name in model_names() if name not in ("torchvision", "timm")]
# Exact counts at 10 classes and 3 input channels, as `kdlab models` printed them before
# in_channels existed: RGB models must stay exactly what they were.
RGB_PARAMS = {
    "resnet_teacher": 1_361_450, "cnn_student": 178_026, "fitnet_student": 304_634,
    "resnet8": 78_042, "resnet14": 175_258, "resnet20": 272_474, "resnet32": 466_906,
    "resnet44": 661_338, "resnet56": 855_770, "resnet110": 1_730_714,
    "resnet8x4": 1_210_410, "resnet32x4": 7_410_730, "wrn_16_2": 691_674,
    "wrn_40_2": 2_243_546, "vgg8": 3_917_386, "vgg13": 9_413_066, "torchvision": 11_181_642,
    "timm": 11_181_642,  # timm's resnet18: the same network
    # Changed on purpose to match RepDistiller: mobilenetv2 keeps the 1x1 expansion at t = 1
    # (was 697_258), shufflenetv2 has a 1x1 stem (was 1_263_854).
    "mobilenetv2": 697_546, "shufflenetv2": 1_263_278,
    # Added with the full zoo.
    "resnet50": 23_520_842, "wrn_16_1": 175_066, "wrn_40_1": 563_930, "vgg11": 9_228_362,
    "vgg16": 14_724_042, "vgg19": 20_035_018, "shufflenetv1": 862_768,
}  # fmt: skip
# The zoo's feature maps at 32 px, (C, H) of each stage point, then the embedding's width:
# RepDistiller's `feat` list (f1..fK, then the pooled f_{K+1}) at b84f547, run by us.
REFERENCE_TAPS = {
    "resnet8x4": ([(64, 32), (128, 16), (256, 8)], 256),
    "resnet50": ([(256, 32), (512, 16), (1024, 8), (2048, 4)], 2048),
    "wrn_16_1": ([(16, 32), (32, 16), (64, 8)], 64),
    "wrn_40_1": ([(16, 32), (32, 16), (64, 8)], 64),
    "vgg11": ([(128, 16), (256, 8), (512, 4), (512, 4)], 512),
    "vgg16": ([(128, 16), (256, 8), (512, 4), (512, 4)], 512),
    "vgg19": ([(128, 16), (256, 8), (512, 4), (512, 4)], 512),
    "mobilenetv2": ([(12, 16), (16, 8), (48, 4), (160, 2)], 1280),
    "shufflenetv1": ([(240, 16), (480, 8), (960, 4)], 960),
    "shufflenetv2": ([(116, 16), (232, 8), (464, 4)], 1024),
}  # fmt: skip


def test_every_kdlab_model_has_a_parameter_target():
    assert sorted([*NOTES_TARGETS, *REFERENCE_SIZES]) == sorted(KDLAB_MODELS)


@pytest.mark.parametrize("name", list(NOTES_TARGETS))
def test_the_notes_models_are_on_their_budgets(name):
    target, tolerance = NOTES_TARGETS[name]
    with torch.device("meta"):
        params = count_params(build_model(name, 10))
    assert params == pytest.approx(target, rel=tolerance)


@pytest.mark.parametrize("name", list(REFERENCE_SIZES))
def test_the_zoo_has_the_references_sizes_at_100_classes(name):
    """Within 1% of the published figure, and exactly RepDistiller's own count, less one bias
    per conv output channel for the VGGs (theirs have biases the BatchNorm cancels)."""
    reference = REFERENCE_SIZES[name]
    with torch.device("meta"):
        model = build_model(name, 100)
    params = count_params(model)
    if reference.published is not None:
        assert params == pytest.approx(reference.published * 1e6, rel=0.01)
    conv_biases = sum(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert params + (conv_biases if name.startswith("vgg") else 0) == reference.repdistiller


@pytest.mark.parametrize("name", list(REFERENCE_TAPS))
@torch.no_grad()
def test_the_zoo_taps_the_references_feature_maps(name):
    """The stem is f0, the stage points f1..fK with RepDistiller's shapes, the middle point its
    hint layer f2, and the embedding the pooled fc input."""
    model = build_model(name, 100).eval()
    points, stages = feature_points(model), stage_points(model)
    assert stages == points[1:] and default_feature_point(model) == points[2]
    maps, width = REFERENCE_TAPS[name]
    with FeatureTap(model, [*stages, "embedding"]) as tap:
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert [tuple(tap.features[p].shape) for p in stages] == [(2, c, h, h) for c, h in maps]
    assert tap.features["embedding"].shape == (2, width)


@pytest.mark.parametrize("name", ["cnn_student", "fitnet_student", "torchvision"])
def test_models_without_reference_taps_use_their_last_three_points(name):
    with torch.device("meta"):
        model = build_model(name, 10)
    assert stage_points(model) == feature_points(model)[-3:]


def test_count_params_includes_frozen_parameters_but_not_buffers():
    model = torch.nn.BatchNorm2d(4)
    model.weight.requires_grad_(False)
    assert count_params(model) == 8  # weight + bias; running stats are buffers


@pytest.mark.parametrize("name", KDLAB_MODELS)
def test_kdlab_networks_are_their_feature_points_then_a_head(name):
    """Shapes and taps of every model: test_registries.py."""
    with torch.device("meta"):
        model = build_model(name, 10)
    assert [n for n, _ in model.named_children()] == [*feature_points(model), "head"]


def test_rgb_parameter_counts_are_unchanged():
    assert sorted(RGB_PARAMS) == sorted(model_names())
    for name, params in RGB_PARAMS.items():
        with torch.device("meta"):
            assert count_params(build_model(name, 10)) == params, name
            assert count_params(build_model(name, 10, in_channels=3)) == params, name


@pytest.mark.parametrize("name", model_names())
def test_greyscale_drops_exactly_two_input_planes_of_the_stem(name):
    with torch.device("meta"):
        rgb, grey = build_model(name, 10), build_model(name, 10, 1)
    stem = next(m for m in rgb.modules() if isinstance(m, torch.nn.Conv2d))
    kh, kw = stem.kernel_size
    assert count_params(rgb) - count_params(grey) == 2 * stem.out_channels * kh * kw


@torch.no_grad()
def test_a_rebuilt_torchvision_stem_starts_as_the_rgb_model_on_grey_copies():
    torch.manual_seed(0)
    rgb = build_model("torchvision", 10, name="resnet18").eval()
    torch.manual_seed(0)
    grey = build_model("torchvision", 10, 1, name="resnet18").eval()
    assert grey.conv1.in_channels == 1 and grey.conv1.stride == rgb.conv1.stride == (2, 2)
    assert grey.conv1.kernel_size == (7, 7) and grey.conv1.padding == (3, 3)
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    expected = rgb.double()(x.expand(-1, 3, -1, -1))
    # Equal up to the float32 rounding of the averaged filters (a fresh init is ~100% off).
    assert torch.allclose(grey.double()(x), expected, rtol=1e-5, atol=1e-6)


def test_feature_shape_feeds_the_models_own_channels():
    teacher = build_model("resnet_teacher", 10, 1)
    assert feature_shape(teacher, "layer2", image_size=28) == (64, 14, 14)
    resnet18 = build_model("torchvision", 10, 1, name="resnet18")
    assert feature_shape(resnet18, "layer2", image_size=28) == (128, 4, 4)


def test_channel_errors_are_one_line():
    with pytest.raises(KdlabError, match="at least 1 input channel, got in_channels=0"):
        build_model("resnet8", 10, 0)
    grouped = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(KdlabError, match=r"first conv '0' is grouped \(2 groups\)"):
        with_input_channels(grouped, 1)
    with pytest.raises(KdlabError, match="has no Conv2d"):
        feature_shape(torch.nn.Sequential(torch.nn.Linear(4, 4)), "0")


def test_feature_tap_removes_its_hooks_on_exit():
    model = build_model("resnet8", 10)
    with FeatureTap(model, ["layer1", "layer2"]) as tap:
        model(torch.randn(1, 3, 32, 32))
    assert all(not child._forward_hooks for child in model.children())
    assert tap.features["layer2"].shape == (1, 32, 16, 16)
    assert tap.features["layer2"].requires_grad  # still in the graph, for hint losses


@pytest.mark.parametrize("name", ["resnet_teacher", "fitnet_student", "cnn_student"])
def test_default_points_of_the_notes_models_are_16x16(name):
    model = build_model(name, 10)
    assert feature_shape(model, default_feature_point(model))[1:] == (16, 16)


def test_hint_and_guided_defaults():
    teacher, student = build_model("resnet_teacher", 10), build_model("fitnet_student", 10)
    assert default_feature_point(teacher) == "layer2"
    assert default_feature_point(student) == "block5"
    assert feature_shape(teacher, "layer2") == (64, 16, 16)
    assert feature_shape(student, "block5", image_size=64) == (48, 32, 32)


def test_feature_shape_keeps_training_mode_and_bn_statistics():
    model = build_model("cnn_student", 10)
    model.block1.eval()
    stats = model.block1[0][1].running_mean.clone()
    feature_shape(model, "block2")
    assert model.training and not model.block1.training
    assert torch.equal(model.block1[0][1].running_mean, stats)


def test_modules_up_to_returns_the_prefix():
    model = build_model("resnet_teacher", 10)
    prefix = modules_up_to(model, "layer2")
    assert prefix == [model.stem, model.layer1, model.layer2]
    assert modules_up_to(model, "stem") == [model.stem]


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(KdlabError, match="unknown model 'resnet9'") as err:
        build_model("resnet9", 10)
    assert all(name in str(err.value) for name in model_names())
    assert "\n" not in str(err.value)


def test_options_a_model_does_not_take_are_rejected():
    with pytest.raises(KdlabError, match=r"model=resnet20 does not take model\.depth"):
        build_model("resnet20", 10, depth=32)


def test_unknown_feature_point_lists_the_valid_points():
    model = build_model("resnet8", 10)
    with pytest.raises(KdlabError, match="unknown feature point 'layer4'") as err:
        check_feature_point(model, "layer4")
    assert "stem, layer1, layer2, layer3" in str(err.value)
    with pytest.raises(KdlabError, match="unknown feature point 'head'"):
        modules_up_to(model, "head")
    with pytest.raises(KdlabError, match="unknown feature point"):
        FeatureTap(model, ["layer2", "fc"])


def test_torchvision_resnet18_runs_on_cifar_images():
    model = build_model("torchvision", 10, name="resnet18")
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    points = feature_points(model)
    assert points[-4:] == ("layer1", "layer2", "layer3", "layer4")
    assert "fc" not in points and "avgpool" not in points
    assert default_feature_point(model) == points[len(points) // 2]
    assert feature_shape(model, "layer2") == (128, 4, 4)


def test_unknown_torchvision_name_points_to_the_list():
    with pytest.raises(KdlabError, match="unknown torchvision model 'resnet19'") as err:
        build_model("torchvision", 10, name="resnet19")
    message = str(err.value)
    assert "resnet18" in message and "list_models(module=torchvision.models)" in message
    assert "\n" not in message


def test_describe_models_covers_every_model():
    infos = describe_models()
    assert [info.name for info in infos] == model_names()
    by_name = {info.name: info for info in infos}
    assert by_name["resnet_teacher"].default_feature_point == "layer2"
    assert by_name["cnn_student"].params == 178_026
    assert by_name["torchvision"].params == 11_181_642  # resnet18 at 10 classes
    assert by_name["mobilenetv2"].params_100 == 812_836
    assert by_name["mobilenetv2"].published == 0.81 and by_name["cnn_student"].published is None
    assert by_name["timm"].feature_points == ["act1", "layer1", "layer2", "layer3", "layer4"]
    assert all(info.default_feature_point in info.feature_points for info in infos)
