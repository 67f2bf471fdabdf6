"""Pretrained weights: torchvision's (torch's hub cache, a state-dict file) and timm's (the
Hugging Face cache offline, a file); the new head; greyscale input; the backbone frozen for
the first epochs, resumed there; the one-line errors.

The weights are generated: each architecture's own random state dict, written where
torchvision or timm look for the real one. Nothing is downloaded: every test runs with the
proxies pointing at a closed port and HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from harness import TINY, read_summary, run_kdlab
from kdlab.engine.checkpoint import load_checkpoint, model_from_checkpoint
from kdlab.engine.fine_tuning import backbone_modules, head_first
from kdlab.engine.objective import CrossEntropy
from kdlab.engine.stage import Stage
from kdlab.errors import KdlabError
from kdlab.methods.teacher import run_prefix
from kdlab.models import FeatureTap, build_model, feature_points, head_parameters
from test_cli import assert_one_line_error
from test_reliability import assert_same_run

CLOSED = "http://127.0.0.1:9"  # nothing listens: any download fails at once
SMALL = [
    *TINY,
    "data.train_size=64",
    "data.test_size=40",
    "data.val_split=0.004",  # 40 val images
    "trainer.precision=32",
    "trainer.deterministic=true",
]


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch) -> Path:
    """No network, an empty torch hub cache and Hugging Face cache (this process and the
    kdlab subprocesses alike); returns the TORCH_HOME."""
    for key in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(key, CLOSED)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.set_num_threads(1)
    return tmp_path / "torch"


def random_weights(name: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision architecture's own (random) ImageNet state dict."""
    torch.manual_seed(seed)
    return torchvision.models.get_model(name, num_classes=1000).state_dict()


def in_hub_cache(torch_home: Path, name: str) -> dict[str, torch.Tensor]:
    """Random weights saved as the file torchvision downloads for `name`'s DEFAULT weights."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = torch_home / "hub" / "checkpoints" / os.path.basename(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = random_weights(name)
    torch.save(state, path)
    return state


def timm_weights(name: str, path: Path) -> dict[str, torch.Tensor]:
    """A timm architecture's own (random) ImageNet weights, saved as safetensors."""
    torch.manual_seed(1)
    state = timm.create_model(name).state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    return state


def in_hf_cache(hf_home: Path, name: str) -> dict[str, torch.Tensor]:
    """Random timm weights in the Hugging Face cache's layout: the repo's refs/main names a
    snapshot holding model.safetensors, as hf_hub_download leaves a download."""
    repo_id = timm.models.get_pretrained_cfg(name).hf_hub_id
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    return timm_weights(name, repo / "snapshots" / commit / "model.safetensors")


def assert_loaded_but_head(state: dict, loaded: dict, head: set[str]) -> None:
    assert set(loaded) == set(state)
    assert [k for k in state if k not in head and not torch.equal(loaded[k], state[k])] == []
    assert head and all(loaded[k].shape != state[k].shape for k in head)


# --- torchvision ---------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1", "SqueezeNet1_1_Weights.DEFAULT"])
def test_named_weights_load_from_the_hub_cache_all_but_a_new_head(offline, caplog, weights):
    state = in_hub_cache(offline, "squeezenet1_1")  # its head is a conv: found by shape, not type
    with caplog.at_level(logging.INFO, logger="kdlab"):
        model = build_model("torchvision", 7, name="squeezenet1_1", weights=weights)
    head = {"classifier.1.weight", "classifier.1.bias"}
    assert_loaded_but_head(state, model.state_dict(), head)
    assert model.state_dict()["classifier.1.weight"].shape[0] == 7
    (line,) = [r.getMessage() for r in caplog.records if "kept" in r.getMessage()]
    assert f"kept {len(state) - 2} tensors (features {len(state) - 2})" in line
    assert "new: classifier.1.bias, classifier.1.weight" in line


@pytest.mark.parametrize("layout", ["plain", "nested"])
def test_a_state_dict_file_loads_all_but_the_new_head(tmp_path, layout):
    state = random_weights("shufflenet_v2_x0_5")
    path = tmp_path / "weights.pth"
    torch.save(state if layout == "plain" else {"model": state, "epoch": 3}, path)
    model = build_model("torchvision", 10, name="shufflenet_v2_x0_5", weights=str(path))
    assert_loaded_but_head(state, model.state_dict(), {"fc.weight", "fc.bias"})


def test_greyscale_input_sums_the_first_conv_over_rgb(tmp_path):
    state = random_weights("shufflenet_v2_x0_5")
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    torch.manual_seed(0)
    rgb = build_model("torchvision", 10, 3, name="shufflenet_v2_x0_5", weights=str(path)).eval()
    torch.manual_seed(0)
    grey = build_model("torchvision", 10, 1, name="shufflenet_v2_x0_5", weights=str(path)).eval()
    first = state["conv1.0.weight"]
    assert torch.allclose(grey.state_dict()["conv1.0.weight"], first.sum(1, keepdim=True))
    image = torch.rand(2, 1, 32, 32)  # a grey image gives what it gives copied into RGB
    with torch.no_grad():
        assert torch.allclose(grey(image), rgb(image.expand(-1, 3, -1, -1)), atol=1e-5)


def test_an_unknown_weights_name_lists_the_models_own():
    with pytest.raises(KdlabError) as error:
        build_model("torchvision", 10, name="resnet50", weights="IMAGENET1K_V3")
    assert "unknown weights 'IMAGENET1K_V3' for torchvision resnet50" in str(error.value)
    assert "choose one of DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2" in str(error.value)


@pytest.mark.parametrize(
    ("other", "says"),
    [
        ("resnet18", ["missing (first: conv1.0.weight)", "unexpected (first: conv1.weight)"]),
        ("shufflenet_v2_x1_0", ["differ (first: stage2.0.branch1.2.weight is 58x24x1x1, the "]),
    ],
)
def test_weights_of_another_architecture_name_the_first_misfit(tmp_path, other, says):
    path = tmp_path / f"{other}.pth"
    torch.save(random_weights(other), path)
    with torch.device("meta"), pytest.raises(KdlabError) as error:  # the pre-flight's check
        build_model("torchvision", 10, name="shufflenet_v2_x0_5", weights=str(path))
    message = str(error.value)
    assert f"pretrained weights {path} do not fit torchvision shufflenet_v2_x0_5" in message
    assert all(part in message for part in says), message
    assert "\n" not in message


def test_offline_a_missing_file_is_named_with_the_cache_dir_to_put_it_in(offline):
    with pytest.raises(KdlabError) as error:
        build_model("torchvision", 10, name="shufflenet_v2_x0_5", weights="DEFAULT")
    message = str(error.value)
    assert (
        "shufflenetv2_x0.5-f707e7126e.pth is not in the cache and cannot be downloaded" in message
    )
    assert f"into {offline / 'hub' / 'checkpoints'}/" in message
    assert list((offline / "hub" / "checkpoints").iterdir()) == []  # no partial file left


def test_a_trained_model_rebuilds_from_its_checkpoint_without_its_pretrained_weights():
    trained = build_model("torchvision", 10, name="shufflenet_v2_x0_5")
    model_cfg = {"arch": "torchvision", "name": "shufflenet_v2_x0_5", "weights": "DEFAULT"}
    state = {"config": {"model": {**model_cfg, "freeze_epochs": 1}}, "num_classes": 10}
    rebuilt = model_from_checkpoint({**state, "model": trained.state_dict()})  # no file: no read
    assert backbone_equal(rebuilt.state_dict(), trained.state_dict(), set())


def test_the_head_stage_trains_only_the_head_and_freezes_every_other_module():
    model_cfg = {"arch": "torchvision", "name": "mobilenet_v3_small", "weights": "DEFAULT"}
    head = head_parameters(model_cfg, 10, 3)
    assert head == {"classifier.3.weight", "classifier.3.bias"}
    model = build_model("torchvision", 10, name="mobilenet_v3_small")
    extra = torch.nn.Parameter(torch.zeros(3))  # an objective's own parameter trains too
    stage = Stage("train", CrossEntropy(), [{"params": [*model.parameters(), extra]}], 5)
    first, rest = head_first(stage, model, head, 2)
    assert (first.name, first.epochs, rest.name, rest.epochs) == ("head", 2, "train", 3)
    trained = {id(p) for g in first.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert trained == {id(named[k]) for k in head} | {id(extra)}
    frozen = {id(p) for m in first.frozen for p in m.parameters()}
    assert frozen == {id(p) for k, p in named.items() if k not in head}
    assert model.classifier[3] not in backbone_modules(model, head)
    assert rest.param_groups is stage.param_groups and rest.frozen == ()


# --- timm ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])
def test_timm_feature_points_are_its_feature_info_and_prefixes_reach_them(name):
    model = build_model("timm", 10, name=name).eval()
    points = feature_points(model)
    assert points == tuple(info["module"] for info in model.feature_info)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), FeatureTap(model, list(points)) as tap:
        model(x)
    for point in points:  # FitNets' stage one runs the modules up to a point (nested ones too)
        with torch.no_grad():
            assert torch.equal(run_prefix(model, point, x), tap.features[point]), point


def test_an_unknown_timm_model_suggests_close_names():
    with pytest.raises(KdlabError) as error:
        build_model("timm", 10, name="test_resnett")
    assert "unknown timm model 'test_resnett' (close: test_resnet" in str(error.value)


def test_a_timm_weights_file_loads_and_one_of_another_architecture_is_refused(tmp_path):
    state = timm_weights("test_resnet", tmp_path / "model.safetensors")
    model = build_model(
        "timm", 10, 1, name="test_resnet", pretrained_file=str(tmp_path / "model.safetensors")
    )
    loaded = model.state_dict()
    first = next(key for key, value in state.items() if value.ndim == 4)
    assert torch.allclose(loaded[first], state[first].sum(1, keepdim=True))  # greyscale: summed
    rgb, grey = dict(state), dict(loaded)
    del rgb[first], grey[first]
    assert_loaded_but_head(rgb, grey, {"fc.weight", "fc.bias"})
    other = tmp_path / "other.safetensors"
    timm_weights("test_efficientnet", other)
    with pytest.raises(KdlabError) as error:
        build_model("timm", 10, name="test_resnet", pretrained_file=str(other))
    assert "do not fit timm test_resnet: Missing key(s)" in str(error.value)
    assert "\n" not in str(error.value)


# --- end to end ----------------------------------------------------------------------------


def backbone_equal(saved: dict, state: dict, head: set[str]) -> bool:
    return all(torch.equal(saved[k], state[k]) for k in state if k not in head)


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory) -> tuple[Path, dict, list[str]]:
    """`kdlab train` of a pretrained shufflenet, its backbone frozen in epoch 1 of 2."""
    cwd = tmp_path_factory.mktemp("frozen")
    state = in_hub_cache(cwd / "torch", "shufflenet_v2_x0_5")
    args = [
        "train", "model=torchvision", "model.name=shufflenet_v2_x0_5", "model.weights=DEFAULT",
        "model.freeze_epochs=1", *SMALL,
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TORCH_HOME", str(cwd / "torch"))
        env.setenv("HTTPS_PROXY", CLOSED)
        env.setenv("https_proxy", CLOSED)
        proc = run_kdlab(*args, "hydra.run.dir=run", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    assert f"kept {len(state) - 2} tensors" in proc.stdout
    assert "new: fc.bias, fc.weight" in proc.stdout
    return cwd / "run", state, args


def test_freeze_epochs_train_the_head_alone_then_the_whole_model(frozen_run):
    run, state, _ = frozen_run
    head = {"fc.weight", "fc.bias"}
    after_head = load_checkpoint(run / "checkpoints" / "head.pt")
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (after_head["stage"], after_head["epoch"], last["stage"], last["epoch"]) == (
        "head",
        1,
        "train",
        2,
    )
    assert backbone_equal(after_head["model"], state, head)  # BatchNorm statistics too
    assert not any(torch.equal(after_head["model"][k], last["model"][k]) for k in head)
    changed = [k for k in state if k not in head and not torch.equal(last["model"][k], state[k])]
    assert "conv1.0.weight" in changed and "conv5.1.running_mean" in changed
    assert read_summary(run)["stages"].keys() == {"head", "train"}


def test_a_run_stopped_after_its_head_stage_resumes_to_the_same_result(frozen_run, tmp_path):
    reference, _, args = frozen_run
    run = tmp_path / "run"
    shutil.copytree(reference, run)  # as a kill right after epoch 1's saves leaves it
    for name in ("last.pt", "best.pt"):
        shutil.copy(run / "checkpoints" / "head.pt", run / "checkpoints" / name)
    # A kill leaves no closing files: no summary, confusion or best.pt's record (best.pt.json)
    closing = ("summary.json", "confusion.csv", "confusion.png", "checkpoints/best.pt.json")
    for name in ("checkpoints/head.pt", *closing):
        (run / name).unlink()
    proc = run_kdlab(*args, "resume=true", f"hydra.run.dir={run}", cwd=tmp_path)  # empty cache
    assert proc.returncode == 0, proc.stderr
    assert "resuming head after epoch 1" in proc.stdout
    assert_same_run(run, reference)


def test_timm_pretrained_from_the_hf_cache_offline_teaches_a_timm_student(tmp_path):
    state = in_hf_cache(tmp_path / "hf", "test_resnet")
    teacher = [
        "train", "model=timm", "model.name=test_resnet", "model.pretrained=true",
        "model.freeze_epochs=1", *SMALL, "hydra.run.dir=teacher",
    ]  # fmt: skip
    # A fresh interpreter: huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when imported.
    proc = run_kdlab(*teacher, cwd=tmp_path, fresh_process=True)
    assert proc.returncode == 0, proc.stderr
    after_head = load_checkpoint(tmp_path / "teacher" / "checkpoints" / "head.pt")["model"]
    assert backbone_equal(after_head, state, {"fc.weight", "fc.bias"})
    shutil.rmtree(tmp_path / "hf")  # the teacher is rebuilt from its checkpoint alone
    student = [
        "distill", "model=timm", "model.name=test_efficientnet", "loss=at", *SMALL,
        "trainer.epochs=1", "teacher.ckpt=teacher", "hydra.run.dir=student",
    ]  # fmt: skip
    proc = run_kdlab(*student, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(tmp_path / "student")
    assert summary["model"] == "timm:test_efficientnet" and summary["loss_at"] > 0


def test_without_timm_model_timm_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm: ModuleNotFoundError
    proc = run_kdlab("train", "model=timm", "hydra.run.dir=run", cwd=tmp_path)
    assert_one_line_error(proc, "model=timm needs the timm package", "pip install 'kdlab[timm]'")
    assert not (tmp_path / "run").exists()
    proc = run_kdlab("models", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pip install 'kdlab[timm]'" in proc.stdout and "resnet_teacher" in proc.stdout
