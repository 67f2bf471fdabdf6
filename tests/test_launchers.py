"""Sweeps and studies through Hydra's launcher plugins (the `cluster` extra): joblib and
submitit_local start real worker processes, so every run is checked by what it left in its
dir, and a study's report against the same study with the basic launcher (one after another,
in this process). The default suite runs one cheap case per launcher path and the pre-flight;
the launcher matrix on note 1 and the CIFAR-100 grid is `slow`."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness import FAST, command_env, read_summary, run_kdlab, succeeded
from kdlab.cli.commands.study import chained, load_study, planned_jobs, split_generations
from kdlab.data.cifar_archive import write_cifar100

# The tiniest data that still trains and tests: one batch of each split.
TINIEST = [
    "data=synthetic",
    "data.train_size=64",
    "data.test_size=32",
    "data.val_split=0.01",
    "data.image_size=16",
    "trainer.batch_size=32",
    "trainer.eval_batch_size=100",
    "trainer.epochs=1",
    "trainer.deterministic=true",
]
JOBLIB = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
SUBMITIT = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=30"]
LAUNCHERS = {"basic": [], "joblib": JOBLIB, "submitit_local": SUBMITIT}
# What differs between two identical studies: how long they took and where they are.
NOT_COMPARED = ("wall_time_s", "images_per_s", "train_images_per_s", "run_dirs", "time")

# A fresh interpreter in which the launcher plugins' modules cannot be imported, as when the
# `cluster` extra is not installed; each refusal is printed as `EXIT <code> <stderr line>`.
HIDDEN_PLUGINS = textwrap.dedent(
    """
    import contextlib, io, sys
    from importlib.abc import MetaPathFinder

    class Absent(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.startswith(("hydra_plugins.hydra_joblib", "hydra_plugins.hydra_submitit")):
                raise ModuleNotFoundError(f"No module named '{name}'", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    from kdlab.cli.main import main

    for argv in sys.argv[1:]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            try:
                main(argv.split())
                code = 0
            except SystemExit as stop:
                code = stop.code
        print("EXIT", code, err.getvalue().strip().replace("\\n", " | "))
    """
)


def test_a_launcher_whose_plugin_is_missing_is_refused_in_one_line(tmp_path):
    calls = [
        "study note1 hydra/launcher=joblib --out s1",
        "study cifar100 pairs=resnet8-resnet8 methods=kd hydra/launcher=submitit_local --out s2",
        "distill -m model=cnn_student T=2,4 hydra/launcher=submitit_slurm",
        "study cifar100 pairs=resnet8-resnet8 methods=kd --jobs 2 --out s3",  # = joblib
    ]
    proc = subprocess.run(
        [sys.executable, "-c", HIDDEN_PLUGINS, *calls],
        cwd=tmp_path, env=command_env(None), capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 4, proc.stdout
    names = ["joblib", "submitit_local", "submitit_slurm", "joblib"]
    for line, name in zip(lines, names, strict=True):
        assert line.startswith("EXIT 2 "), line
        error = line.removeprefix("EXIT 2 ").split(" | ")[-1]  # --jobs: a notice comes first
        assert error.startswith("kdlab: error: ") and "pip install 'kdlab[cluster]'" in error
        assert f"hydra/launcher={name} needs" in error
    assert not any((tmp_path / out).exists() for out in ("s1", "s2", "s3"))


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("launch_teacher")
    succeeded(run_kdlab("train", *FAST, *TINIEST, "hydra.run.dir=teacher", cwd=cwd))
    return cwd / "teacher"


@pytest.mark.parametrize(
    "launcher", ["joblib", pytest.param("submitit_local", marks=pytest.mark.slow)]
)
def test_a_t_by_alpha_sweep_runs_through_a_launcher(teacher, tmp_path, launcher):
    proc = run_kdlab(
        "distill", "-m", "model=cnn_student", *TINIEST, f"teacher.ckpt={teacher}",
        "T=2,4", "alpha=0.5,0.9", *LAUNCHERS[launcher], f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
    )  # fmt: skip
    succeeded(proc)
    logged = proc.stdout + proc.stderr
    started = "Joblib.Parallel(n_jobs=2" if launcher == "joblib" else "Submitit 'local' sweep"
    assert started in logged
    runs = sorted(p.parent for p in (tmp_path / "sweep").glob("*/summary.json"))
    settings = sorted((s["T"], s["alpha"]) for s in map(read_summary, runs))
    assert settings == [(2, 0.5), (2, 0.9), (4, 0.5), (4, 0.9)]
    assert all(read_summary(run)["status"] == "finished" for run in runs)
    with (tmp_path / "sweep" / "summary.csv").open() as f:  # the sweep's own table
        assert len(list(csv.DictReader(f))) == 4


def study_args(study: str, *more: str) -> list[str]:
    return ["study", study, "model=cnn_student", *TINIEST, *more]


def test_born_again_generations_run_in_waves_through_submitit_local(tmp_path):
    """The teacher's wave, then generation 1's, each a submitit job; the chain of later
    generations is the plan's (test_born_again_plans_each_generation_from_the_one_before)."""
    out = tmp_path / "ba"
    proc = run_kdlab(*study_args("born_again", "generations=1", *SUBMITIT), "--out", str(out),
                     cwd=tmp_path)  # fmt: skip
    succeeded(proc)
    gens = [read_summary(out / f"gen{k}") for k in range(2)]
    assert [g["status"] for g in gens] == ["finished"] * 2
    assert gens[1]["loss_name"] == "kd"
    assert gens[1]["teacher"]["ckpt"].startswith(str(out / "gen0"))
    assert {g["model"] for g in gens} == {"cnn_student"}  # the user's model, every generation
    assert len(list((out / ".submitit").glob("*/*_log.out"))) == 2  # one submitit job each
    with (out / "report.csv").open() as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert list(rows) == ["gen0", "gen1"]
    for k, gen in enumerate(gens):
        assert float(rows[f"gen{k}"]["test_acc"]) == pytest.approx(gen["test_acc"], abs=0.01)


def test_born_again_plans_each_generation_from_the_one_before(tmp_path):
    spec, runs = load_study("born_again")
    generations, shared = split_generations(spec, ["generations=3", "model=cnn_student"])
    jobs = planned_jobs(chained(runs, generations), shared, 2, tmp_path, None)
    assert [(job.sub, job.needs) for job in jobs] == [
        ("gen0", ()),
        *[(f"gen1/seed{s}", ("gen0",)) for s in range(2)],
        *[(f"gen{k}/seed{s}", (f"gen{k - 1}/seed{s}",)) for k in (2, 3) for s in range(2)],
    ]
    for job in jobs[1:]:
        teacher = tmp_path / job.needs[0]
        assert job.args[-2:] == (f"seed={job.sub[-1]}", f"teacher.ckpt={teacher}")
        assert "model=cnn_student" in job.args and job.command == "distill"


def test_a_failed_teacher_leaves_its_wave_running_and_its_students_not_run(tmp_path):
    out = tmp_path / "study"
    (out / "teacher").mkdir(parents=True)
    (out / "teacher" / "checkpoints").write_text("a file where the teacher's checkpoints go")
    proc = run_kdlab(*study_args("note1"), "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("kdlab: error:")]
    assert error.startswith("kdlab: error: 2 of 3 runs did not finish (teacher failed (")
    assert f"log: {out / 'teacher' / 'train.log'}" in error
    assert "kd not run: teacher did not finish" in error
    assert f"rerun the same command with --out {out}" in error
    assert read_summary(out / "baseline")["status"] == "finished"  # the same wave went on
    assert not (out / "kd").exists()
    assert "== kd: not run: teacher did not finish" in proc.stdout


# The launcher matrix (slow): each study through each launcher, the same report table.


def table(path) -> list[dict[str, str]]:
    """A report's rows without the columns that time the runs or name their dirs; numbers
    to 4 significant digits (another process may sum a loss in another order)."""

    def cell(value: str) -> str:
        try:
            return f"{float(value):.4g}"
        except ValueError:
            return value

    with path.open() as f:
        return [
            {k: cell(v) for k, v in row.items() if not k.startswith(NOT_COMPARED)}
            for row in csv.DictReader(f)
        ]


def summaries(out) -> dict[str, dict]:
    return {
        str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("summary.json")
    }


@pytest.fixture(scope="module")
def note1(tmp_path_factory):
    """note 1 (teacher, baseline, kd) by each launcher: launcher -> (study dir, stdout)."""
    cwd = tmp_path_factory.mktemp("note1_launchers")
    done = {}
    for name, launcher in LAUNCHERS.items():
        out = cwd / name
        proc = run_kdlab(*study_args("note1", *launcher), "--out", str(out), cwd=cwd)
        succeeded(proc)
        done[name] = (out, proc.stdout)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_note1_through_a_launcher_gives_the_basic_launchers_table(note1, launcher):
    out, _ = note1[launcher]
    basic, _ = note1["basic"]
    assert sorted(summaries(out)) == ["baseline", "kd", "teacher"]
    assert all(s["status"] == "finished" for s in summaries(out).values())
    assert table(out / "report.csv") == table(basic / "report.csv")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_an_interrupted_study_resumes_without_redoing_finished_runs(note1, launcher, tmp_path):
    done, _ = note1[launcher]
    out = tmp_path / "note1"
    shutil.copytree(done, out)
    shutil.rmtree(out / "kd")  # stopped between the waves: the student never started
    (out / "baseline" / "summary.json").unlink()  # stopped after its last checkpoint
    kept = {sub: (out / sub / "summary.json").stat().st_mtime_ns for sub in ("teacher",)}
    teacher = (out / "teacher" / "checkpoints" / "best.pt").read_bytes()
    proc = run_kdlab(*study_args("note1", *LAUNCHERS[launcher]), "--out", str(out), cwd=tmp_path)
    succeeded(proc)
    assert "== teacher: finished already, kept" in proc.stdout
    assert "== baseline: resumed train" in proc.stdout
    assert "== kd: kdlab distill" in proc.stdout
    assert (out / "teacher" / "summary.json").stat().st_mtime_ns == kept["teacher"]
    assert (out / "teacher" / "checkpoints" / "best.pt").read_bytes() == teacher
    assert all(s["status"] == "finished" for s in summaries(out).values())
    assert table(out / "report.csv") == table(done / "report.csv")


GRID_DATA = ["data.root=data", "data.verify_md5=false", "data.val_split=0.25",
             "data.train_size=100", "trainer.epochs=1", "trainer.deterministic=true"]  # fmt: skip


@pytest.mark.slow
def test_the_grid_on_a_cifar100_archive_gives_one_table_whatever_the_launcher(tmp_path):
    write_cifar100(tmp_path / "data", train=400)
    args = ["study", "cifar100", "pairs=resnet8-resnet8", "methods=baseline,kd", *GRID_DATA]
    tables = {}
    for name, launcher in LAUNCHERS.items():
        out = tmp_path / name
        proc = run_kdlab(*args, *launcher, "--out", str(out), cwd=tmp_path)
        succeeded(proc)
        assert sorted(summaries(out)) == [
            "baseline/resnet8/seed0", "resnet8-resnet8/kd/seed0", "teacher/resnet8"
        ]  # fmt: skip
        assert all(s["status"] == "finished" for s in summaries(out).values())
        tables[name] = table(out / "grid.csv")
        print(name, next(line for line in proc.stdout.splitlines() if "grid done in" in line))
    assert tables["joblib"] == tables["basic"] == tables["submitit_local"]
