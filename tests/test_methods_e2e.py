"""Every distillation method end to end through the CLI, on tiny synthetic data."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, read_summary, run_kdlab
from kdlab.methods.base import InitStageMethod
from kdlab.methods.points import resolve_taps
from kdlab.methods.registry import METHODS  # every built-in method, imported
from kdlab.models import build_model
from kdlab.report import find_runs
from kdlab.report.curves import curves_figures
from kdlab.report.plotting import report_colours
from test_cli import assert_one_line_error

TEACHER = "resnet8"
ONE_EPOCH = [*TINY, "trainer.epochs=1", f"teacher.model={TEACHER}"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A working dir whose outputs/ holds one finished teacher run."""
    cwd = tmp_path_factory.mktemp("methods")
    proc = run_kdlab("train", f"model={TEACHER}", *TINY, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd


def distill(workdir, name: str, *overrides: str) -> dict:
    run = workdir / name
    proc = run_kdlab("distill", *overrides, f"hydra.run.dir={run}", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    return read_summary(run)


def records(run) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def combined_methods() -> list:
    """Every registered method with the combined objective (not ce or kd; the init-stage
    methods and those reading two views have their own files), from the registry: a new one
    runs without editing a list. The first method of each kind of tap (logits, stages,
    embedding, middle, prepool, ...) runs by default, the others under -m slow: the same path,
    and each takes a step and is checked against its formula in the unit tests."""
    params, seen = [], set()
    for name, cls in METHODS.items():
        if name in ("ce", "kd") or issubclass(cls, InitStageMethod) or cls.uses_views > 1:
            continue  # (mlkd, on two views of each image: test_mlkd.py)
        slow = cls.taps in seen and not cls.uses_indices  # CRD: its memory bank, by default
        seen.add(cls.taps)
        params.append(pytest.param(name, marks=pytest.mark.slow) if slow else name)
    return params


def tapped_teacher_points(name: str) -> list[str]:
    """What `loss=NAME` taps on the teacher, as its class resolves it."""
    teacher, student = build_model(TEACHER, 10), build_model(TEACHER, 10)
    return list(resolve_taps(student, teacher, METHODS[name].taps, name, 32).teacher)


@pytest.mark.parametrize("name", combined_methods())
def test_each_method_trains_and_writes_its_loss_parts(workdir, name):
    summary = distill(workdir, name, *ONE_EPOCH, f"loss={name}", f"model={TEACHER}")
    assert summary["loss_name"] == name
    assert {"loss", "loss_hard", "loss_kd", f"loss_{name}"} <= summary.keys()
    last = records(workdir / name)[-1]
    assert {f"train/loss_{name}", f"val/loss_{name}", "train/loss_hard"} <= last.keys()
    teacher = summary["teacher"]
    if METHODS[name].taps != "logits":  # the teacher runs online: its features are tapped
        assert teacher["logit_cache"] is None
        assert "taps the teacher's features" in teacher["logit_cache_off"]
        assert summary["teacher_features"] == tapped_teacher_points(name)
    else:  # logits only: they come from the cache
        cache = teacher["logit_cache"]
        assert cache["views_computed"] + cache["views_reused"] > 0


@pytest.mark.parametrize("name", ["kd", "dkd"])
def test_logit_standardisation_is_an_option_of_kd_and_dkd(workdir, name):
    summary = distill(workdir, f"{name}_std", *ONE_EPOCH, f"loss={name}", "loss.standardize=true")
    assert summary.get("standardize") is True or summary["method_settings"]["standardize"]


def test_dkd_warmup_scales_its_term_by_the_epoch_through_the_engine(workdir):
    """With the DKD term weighted 0 both runs train bit for bit alike, so the logged term of
    warm-up 2 is exactly half that of warm-up 0 in epoch 1 and equal from epoch 2."""
    common = [*TINY, f"teacher.model={TEACHER}", "trainer.deterministic=true", "loss=dkd"]
    common.append("loss.weight=0")
    distill(workdir, "dkd_w0", *common, "loss.warmup=0")
    distill(workdir, "dkd_w2", *common, "loss.warmup=2")
    full = [r["train/loss_dkd"] for r in records(workdir / "dkd_w0")]
    warm = [r["train/loss_dkd"] for r in records(workdir / "dkd_w2")]
    assert warm == pytest.approx([full[0] / 2, full[1]], rel=1e-6)


def test_fitnet_stage_two_takes_a_logit_method(workdir):
    run = workdir / "fitnet_dkd"
    proc = run_kdlab(
        "fitnet", *ONE_EPOCH, "stage2=finetune", "loss=dkd", f"hydra.run.dir={run}", cwd=workdir
    )
    assert proc.returncode == 0, proc.stderr
    summary = read_summary(run)
    assert "loss_dkd" in summary and "loss_fit" in summary


def test_a_sweep_runs_one_job_per_method(workdir):
    out = workdir / "sweep"
    proc = run_kdlab(
        "distill", "-m", *ONE_EPOCH, "loss=dkd,sp", f"hydra.sweep.dir={out}", cwd=workdir
    )
    assert proc.returncode == 0, proc.stderr
    names = sorted(read_summary(s.parent)["loss_name"] for s in out.rglob("summary.json"))
    assert names == ["dkd", "sp"]
    header = (out / "summary.md").read_text().split("\n\n")[-1].splitlines()[0]
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert {"loss", "dkd", "sp", "hard"} <= set(columns)  # the method column and its parts


def test_the_report_shows_each_methods_own_part(workdir):
    """The report knows no method by name: dkd's and sp's parts get panels and columns."""
    out = workdir / "report"
    proc = run_kdlab("report", str(workdir / "sweep"), "--curves", "--out", str(out), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    runs = find_runs([workdir / "sweep"])
    parts = curves_figures(runs, report_colours(runs))["curves_loss_parts"]
    titles = [ax.get_title() for ax in parts.axes]
    assert titles[0].startswith("Distillation objective")
    assert any(t.startswith("dkd loss part") for t in titles)
    assert any(t.startswith("sp loss part") for t in titles)
    assert (out / "curves_loss_parts.png").is_file()
    table = (out / "report.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| run"))
    assert {"method", "dkd", "sp"} <= {cell.strip() for cell in header.strip("|").split("|")}


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        (["loss=nosuch"], ["unknown loss 'nosuch'", "dkd", "rkd", "(loss=NAME)"]),
        (["loss=dkd", "loss.kd_weight=-0.5"], ["loss.kd_weight must be >= 0"]),
        (["loss=dist", "T=0"], ["T must be positive"]),
        (
            ["loss=hint", "loss.student_points=[nosuch]"],
            ["loss.student_points: unknown feature point 'nosuch'", "block1, block2"],
        ),
    ],
)
def test_bad_method_settings_fail_in_one_line_and_write_nothing(tmp_path, overrides, fragments):
    """(loss.beta, loss.warmup and a model without feature points are catalogue cases.)"""
    run = tmp_path / "run"
    proc = run_kdlab("distill", *TINY, *overrides, f"hydra.run.dir={run}", cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not run.exists()


def test_fitnet_refuses_a_feature_method_for_stage_two(tmp_path):
    proc = run_kdlab("fitnet", *TINY, "loss=at", cwd=tmp_path)
    assert_one_line_error(proc, "stage two takes a logit method", "kd, dkd, dist")
    assert not (tmp_path / "outputs").exists()
