"""kdlab from Python, as a notebook uses it: run a command, load its model, catch mistakes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import kdlab
from harness import FAST
from kdlab.engine.checkpoint import load_checkpoint
from readme_snippets import snippet


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    """One finished 1-epoch run started with kdlab.run, from its own working dir."""
    cwd = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        return kdlab.run("train", [*FAST, "trainer.epochs=1"], echo=False)


def test_run_returns_the_summary_of_the_run_it_started(summary):
    assert summary["status"] == "finished" and summary["model"] == "resnet8"
    assert summary["epochs"] == 1


def test_load_run_takes_a_run_dir_or_a_checkpoint_as_str_and_returns_an_eval_model(summary):
    from_dir = kdlab.load_run(summary["run_dir"])
    from_file = kdlab.load_run(f"{summary['run_dir']}/checkpoints/best.pt")
    for loaded in (from_dir, from_file):
        assert not loaded.model.training
        assert loaded.class_names[0] == "disk-stripes" and len(loaded.class_names) == 10
        assert loaded.summary["test_acc"] == summary["test_acc"]
        assert loaded.config["model"]["arch"] == "resnet8"
    with torch.no_grad():
        logits = from_dir.model(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert load_checkpoint(summary["run_dir"])["epoch"] == 1  # str run dir, as the message says


@pytest.mark.parametrize(
    ("command", "overrides", "message"),
    [
        ("train", ["trainer.epoch=1"], "did you mean trainer.epochs=1?"),
        ("distill", [*FAST, "teacher.search_dir=nowhere"], "no finished resnet_teacher"),
        ("report", [], "kdlab.run runs train, distill, fitnet"),
    ],
)
def test_mistakes_raise_kdlab_error_not_system_exit(
    tmp_path, monkeypatch, command, overrides, message
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(kdlab.KdlabError, match=message):
        kdlab.run(command, overrides, echo=False)


def test_import_kdlab_loads_no_torch():
    code = "import sys, kdlab; print('torch' in sys.modules, callable(kdlab.load_run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_the_readme_example_runs_in_a_fresh_dir(tmp_path, monkeypatch, capsys):
    """The README's Python example as written, in an empty dir, at a tiny budget: it trains
    its own teacher before distilling from it."""
    code = snippet("python-api")
    assert code.count('"experiment=quick",') == 2
    tiny = ["data.train_size=64", "data.test_size=32", "data.val_split=0.005", "data.image_size=16"]
    tiny += ["trainer.batch_size=32", "trainer.eval_batch_size=64", "trainer.epochs=1"]
    monkeypatch.chdir(tmp_path)
    exec(code.replace('"experiment=quick",', '"experiment=quick", *TINY,'), {"TINY": tiny})
    assert "did you mean trainer.epochs=3?" in capsys.readouterr().out
    (found,) = tmp_path.glob("outputs/distill/*/*/summary.json")
    summary = json.loads(found.read_text())
    assert summary["teacher"]["model"] == "resnet_teacher" and summary["epochs"] == 1
