"""Plugins: models and data sets from outside kdlab, named in KDLAB_PLUGINS or by an installed
package's entry points, are choices like the built-in ones; a broken plugin is one line."""

from __future__ import annotations

import os
import sys

import pytest
from torch import nn

from harness import FAST, read_summary, run_kdlab, succeeded
from kdlab.data import DataConfig, DatasetSpec, register_dataset
from kdlab.errors import KdlabError
from kdlab.methods import LogitMethod, register
from kdlab.methods.base import METHODS
from kdlab.methods.numbers import Bound
from kdlab.models import register_model
from kdlab.runs.plugins import load_plugins
from test_cli import assert_one_line_error

# A user's module: a two-conv network and a data set of horizontal vs vertical stripes.
PLUGIN = """
from dataclasses import dataclass

import torch
from torch import nn

from kdlab.data import DataConfig, DatasetSpec, ImageSet, Source, register_dataset
from kdlab.models import register_model


class TinyNet(nn.Module):
    feature_points = ("stem", "body")

    def __init__(self, num_classes, in_channels=3, width=8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(pool, nn.Linear(width, num_classes))

    def forward(self, x):
        return self.head(self.body(self.stem(x)))


@dataclass
class StripesConfig(DataConfig):
    image_size: int = 16  # its images' fixed size
    period: int = 4


def stripes(count, period):
    labels = torch.arange(count) % 2
    wave = ((torch.arange(16) // (period // 2)) % 2 * 255).to(torch.uint8)
    rows, cols = wave.view(16, 1).expand(16, 16), wave.view(1, 16).expand(16, 16)
    images = torch.stack([rows if label == 0 else cols for label in labels.tolist()])
    return ImageSet(images.unsqueeze(1).contiguous(), labels)


def load(settings):
    train, test = stripes(40, settings.period), stripes(20, settings.period)
    return Source(train, test, ["horizontal", "vertical"])


register_model("tiny_net", TinyNet, notes="a plugin's two-conv net", options=("width",))
register_dataset(
    "stripes",
    DatasetSpec(StripesConfig, load, "a plugin's stripes", image_size=16, channels=1, flips=False),
)
"""
RUN = [
    "model=tiny_net",
    "model.width=4",
    "data=stripes",
    "data.val_split=0.1",
    "trainer.batch_size=8",
    "trainer.eval_batch_size=20",
    "trainer.epochs=1",
]


def plugin_env(modules: str) -> dict[str, str]:
    return {"KDLAB_PLUGINS": modules}


def test_a_plugin_s_model_and_data_set_are_choices_like_the_built_in_ones(tmp_path):
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    env = plugin_env("my_plugin")
    proc = run_kdlab("train", *RUN, "hydra.run.dir=run", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(tmp_path / "run")
    assert (summary["model"], summary["data"], summary["num_classes"]) == ("tiny_net", "stripes", 2)
    assert summary["params"] == 4 * 1 * 9 + 4 + 4 * 4 * 9 + 4 + 4 * 2 + 2
    models = run_kdlab("models", cwd=tmp_path, env=env)
    assert models.returncode == 0, models.stderr
    line = next(line for line in models.stdout.splitlines() if line.startswith("tiny_net"))
    assert "stem body*" in line and "(a plugin's two-conv net)" in line
    listing = run_kdlab("train", "--help", cwd=tmp_path, env=env)
    groups = dict(line.split(": ", 1) for line in listing.stdout.splitlines() if ": " in line)
    assert "tiny_net" in groups["model"].split(", ") and "stripes" in groups["data"].split(", ")


def test_an_installed_package_s_entry_points_are_loaded(tmp_path):
    site = tmp_path / "site"
    dist_info = site / "kdlab_demo-0.1.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: kdlab-demo\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[kdlab.models]\ntiny = demo_models\n")
    (site / "demo_models.py").write_text(PLUGIN)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    proc = run_kdlab("models", cwd=tmp_path, env={"PYTHONPATH": path})
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("tiny_net ") for line in proc.stdout.splitlines()), proc.stdout


@pytest.mark.parametrize(
    "plugin, override, fragments",
    [
        (
            "import torchx\n",
            "trainer.epochs=1",
            (
                "plugin 'my_plugin' (KDLAB_PLUGINS) failed to import: ModuleNotFoundError: "
                "No module named 'torchx': fix or remove it from KDLAB_PLUGINS",
            ),
        ),
        (
            "from kdlab.models import register_model\nregister_model('resnet8', print)\n",
            "trainer.epochs=1",
            ("plugin 'my_plugin' (KDLAB_PLUGINS): cannot register model 'resnet8'", "is taken"),
        ),
        (PLUGIN, "model.depth=3", ("Could not override 'model.depth'",)),
    ],
    ids=["import-error", "taken-name", "checked-like-built-ins"],
)
def test_plugin_errors_are_one_line_exit_2_and_write_nothing(tmp_path, plugin, override, fragments):
    (tmp_path / "my_plugin.py").write_text(plugin)
    args = [*RUN, override, "hydra.run.dir=run"]
    proc = run_kdlab("train", *args, cwd=tmp_path, env=plugin_env("my_plugin"))
    assert_one_line_error(proc, *fragments)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["my_plugin.py"]


def test_kdlab_plugins_import_from_the_working_directory_once(tmp_path, monkeypatch):
    (tmp_path / "counted_plugin.py").write_text("open('imports.log', 'a').write('imported\\n')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KDLAB_PLUGINS", " counted_plugin ,")
    try:
        load_plugins.__wrapped__()  # what load_plugins runs once per process, run twice
        load_plugins.__wrapped__()
    finally:
        sys.modules.pop("counted_plugin", None)
    assert (tmp_path / "imports.log").read_text() == "imported\n"
    assert str(tmp_path) not in sys.path  # the working directory only while importing


def test_taken_and_untypable_names_cannot_be_registered():
    with pytest.raises(KdlabError, match=r"model=resnet8 is taken .*: register it under"):
        register_model("resnet8", nn.Identity)
    with pytest.raises(KdlabError, match=r"cannot register model 'my-net': model=NAME takes"):
        register_model("my-net", nn.Identity)
    spec = DatasetSpec(DataConfig, lambda settings: None, "a copy")
    with pytest.raises(KdlabError, match="data=synthetic is taken"):
        register_dataset("synthetic", spec)
    with pytest.raises(KdlabError, match="settings must be a DataConfig subclass"):
        register_dataset("odd", DatasetSpec(dict, lambda settings: None, "not a DataConfig"))
    with pytest.raises(KdlabError, match=r"DataConfig\.image_size defaults to 32: declare"):
        register_dataset("small", DatasetSpec(DataConfig, lambda settings: None, "", image_size=8))


def test_a_method_s_bound_must_name_its_settings():
    """A bound on a key the method lacks would fail at the first check, as an AttributeError."""

    class Scaled(LogitMethod):
        scale: float = 1.0
        bounds = (Bound("scales", 1, "a typo", "fix it"),)

    with pytest.raises(KdlabError, match="method 'scaled': its bound on 'scales' names no setting"):
        register("scaled")(Scaled)
    assert "scaled" not in METHODS


# The docs' custom logit method, whole (docs: development, "a method from outside kdlab").
MSE_PLUGIN = """
import torch.nn.functional as F
from kdlab.methods import LogitMethod, register

@register("mse_logits")
class MseLogits(LogitMethod):
    \"\"\"Mean squared error between student and teacher logits.\"\"\"
    scale: float = 1.0

    def loss(self, student, teacher, labels):
        return self.scale * F.mse_loss(student.logits, teacher.logits)
"""


def test_a_plugin_method_is_a_loss_choice_like_the_built_in_ones(tmp_path):
    """`KDLAB_PLUGINS=my_mse kdlab distill loss=mse_logits loss.scale=2` runs it, through the
    logit cache (it reads only logits), and records its settings; `loss.bogus=1` is one line."""
    (tmp_path / "my_mse.py").write_text(MSE_PLUGIN)
    env = plugin_env("my_mse")
    succeeded(run_kdlab("train", *FAST, "trainer.epochs=1", "hydra.run.dir=teacher", cwd=tmp_path))
    student = [*FAST, "trainer.epochs=1", "teacher.ckpt=teacher", "loss=mse_logits"]
    proc = run_kdlab(
        "distill", *student, "loss.scale=2", "hydra.run.dir=run", cwd=tmp_path, env=env
    )
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(tmp_path / "run")
    assert summary["method_settings"]["scale"] == 2.0 and summary["loss_mse_logits"] > 0
    assert summary["teacher"]["logit_cache"] is not None
    bad = run_kdlab("distill", *student, "loss.bogus=1", "hydra.run.dir=bad", cwd=tmp_path, env=env)
    assert_one_line_error(bad, "loss.bogus")
    assert not (tmp_path / "bad").exists()
