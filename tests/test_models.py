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
)

# name -> (num_classes the target refers to, target parameter count, relative tolerance).
# kdlab's own models: the research notes' budgets at 10 classes. The zoo: the counts the
# CRD / RepDistiller papers report at 100 classes.
PARAM_TARGETS = {
    "resnet_teacher": (10, 1_351_100, 0.05),
    "cnn_student": (10, 175_000, 0.05),
    "fitnet_student": (10, 306_000, 0.05),
    "resnet8": (100, 80_000, 0.10),
    "resnet14": (100, 170_000, 0.10),
    "resnet20": (100, 280_000, 0.10),
    "resnet32": (100, 470_000, 0.10),
    "resnet44": (100, 670_000, 0.10),
    "resnet56": (100, 860_000, 0.10),
    "resnet110": (100, 1_740_000, 0.10),
    "resnet8x4": (100, 1_230_000, 0.10),
    "resnet32x4": (100, 7_430_000, 0.10),
    "wrn_16_2": (100, 700_000, 0.10),
    "wrn_40_2": (100, 2_260_000, 0.10),
    "vgg8": (100, 3_960_000, 0.10),
    "vgg13": (100, 9_460_000, 0.10),
    "mobilenetv2": (100, 810_000, 0.10),
    "shufflenetv2": (100, 1_360_000, 0.10),
}
KDLAB_MODELS = [name for name in model_names() if name != "torchvision"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Forward passes on shared CPU cores: one thread avoids oversubscription."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_kdlab_model_has_a_parameter_target():
    assert sorted(PARAM_TARGETS) == sorted(KDLAB_MODELS)


@pytest.mark.parametrize("name", KDLAB_MODELS)
def test_parameter_count_is_on_target(name):
    num_classes, target, tolerance = PARAM_TARGETS[name]
    with torch.device("meta"):
        params = count_params(build_model(name, num_classes))
    assert params == pytest.approx(target, rel=tolerance)


def test_count_params_includes_frozen_parameters_but_not_buffers():
    model = torch.nn.BatchNorm2d(4)
    model.weight.requires_grad_(False)
    assert count_params(model) == 8  # weight + bias; running stats are buffers


@pytest.mark.parametrize("name", KDLAB_MODELS)
@torch.no_grad()
def test_forward_shapes_and_feature_taps(name):
    for num_classes in (10, 100):
        model = build_model(name, num_classes)
        points = feature_points(model)
        assert default_feature_point(model) in points
        assert [n for n, _ in model.named_children()] == [*points, "head"]
        with FeatureTap(model, list(points)) as tap:
            logits = model(torch.randn(2, 3, 32, 32))
        assert logits.shape == (2, num_classes)
        assert set(tap.features) == set(points)
        assert all(f.dim() == 4 and f.shape[0] == 2 for f in tap.features.values())
    assert model(torch.randn(2, 3, 48, 48)).shape == (2, 100)  # larger inputs pool away


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
    assert all(info.default_feature_point in info.feature_points for info in infos)
