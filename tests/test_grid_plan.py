"""The CIFAR-100 grid in process: the published table against the READMEs, the plan, the join
of our runs with the published figures, and the teacher records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from kdlab.cli.commands.study_grid import epoch_images
from kdlab.engine.provenance import Provenance, far_below_published, sha256_file, write_record
from kdlab.errors import KdlabError
from kdlab.grid.cost import forward_flops, job_cost
from kdlab.grid.plan import (
    CROSS_FAMILY,
    GRID_METHODS,
    RECIPE,
    SAME_FAMILY,
    VARIANTS,
    Pair,
    build_plan,
    missing,
    parse_methods,
    parse_pairs,
)
from kdlab.grid.results import cell_result, write_grid_report
from kdlab.methods.registry import METHODS
from kdlab.published import published, published_accuracy, published_figure, sources

# Cells read off the READMEs (RepDistiller@b84f547 README.md "Benchmark Results on CIFAR-100",
# mdistiller@a08d46f README.md "Decoupled Knowledge Distillation" tables), as printed there.
README_CELLS = [
    ("wrn_40_2", "wrn_16_2", "kd", 74.92, "last"),  # RD table 1, KD row, first column
    ("resnet32x4", "resnet8x4", "crd", 75.51, "last"),  # RD table 1, **CRD**
    ("vgg13", "vgg8", "fsp", 70.23, "last"),  # RD table 1, FSP, last column
    ("resnet110", "resnet20", "hint", 68.99, "last"),  # RD table 1, FitNet
    ("vgg13", "mobilenetv2", "at", 59.40, "last"),  # RD table 2, AT, first column
    ("resnet50", "vgg8", "cc", 70.25, "last"),  # RD table 2, CC
    ("wrn_40_2", "shufflenetv1", "nst", 74.89, "last"),  # RD table 2, NST, last column
    ("resnet32x4", "shufflenetv2", "ab", 74.31, "last"),  # RD table 2, AB
    ("resnet56", "resnet20", "dkd", 71.97, "best"),  # MD, **DKD**, first column
    ("wrn_40_2", "wrn_40_1", "dkd", 74.81, "best"),
    ("resnet32x4", "shufflenetv2", "dkd", 77.07, "best"),  # MD's header says MobileNet-V2
    # CTKD@7d52522 README.md "Main Results", TTM@fe457b3 README.md tables 1 and 2, WKD@214cf88
    # README.md (WKD-L row)
    ("wrn_40_2", "wrn_16_2", "ctkd", 75.45, "best"),  # **+CTKD**, fourth column
    ("resnet32x4", "resnet8x4", "ttm", 76.17, "best"),  # TTM, sixth column
    ("vgg13", "vgg8", "wttm", 74.44, "best"),  # WTTM, last column
    ("wrn_40_2", "shufflenetv1", "wttm", 75.42, "best"),  # table 2, WTTM, last column
    ("wrn_40_2", "shufflenetv1", "wkd_l", 76.72, "best"),  # WKD-L, WRN40-2 -> SNV1
    ("wrn_40_2", "wrn_40_1", "ickd", 74.33, "last"),  # ICKD@403b8d3, ICKD-C(w/o KL)
    ("vgg13", "vgg8", "ickd", 73.42, "last"),
    ("resnet50", "mobilenetv2", "sdd", 69.55, "best"),  # SDD@e412036 cifar100.png, SD-KD
    # logit-standardization-KD@f6e5aa5 README.md tables 1 and 2 (MLKD, +Ours rows), MD's DOT
    ("resnet32x4", "resnet8x4", "mlkd", 77.08, "best"),  # MLKD, first column
    ("resnet110", "resnet20", "mlkd+ls", 72.27, "best"),  # MLKD+**Ours**, last column
    ("vgg13", "mobilenetv2", "kd+ls", 68.61, "best"),  # table 2, KD+**Ours**, VGG13/MN-V2
    ("resnet56", "resnet20", "dkd+ls", 72.32, "best"),  # DKD+**Ours**, fifth column
    ("resnet50", "mobilenetv2", "ctkd", 68.67, "best"),  # table 2, CTKD, last column
    ("wrn_40_2", "wrn_40_1", "ctkd+ls", 74.58, "best"),  # CTKD+**Ours**, third column
    ("resnet32x4", "shufflenetv2", "dist", 77.35, "best"),  # TTM README, table 2, DIST
    ("resnet32x4", "shufflenetv2", "kd+dot", 75.55, "best"),  # MD, KD+DOT
    ("vgg13", "vgg8", "kd+dot", 73.77, "best"),
]


def test_the_published_table_holds_the_readmes_figures():
    for teacher, student, method, top1, protocol in README_CELLS:
        figure = published_figure("cifar100", teacher, student, method)
        assert figure is not None and figure.top1 == top1, (teacher, student, method)
        assert figure.source.protocol == protocol
    # the teachers' and students' own accuracies (RD's "Teacher <br> Student" rows)
    own = {"resnet32x4": 79.42, "resnet50": 79.34, "wrn_40_2": 75.61, "mobilenetv2": 64.60}
    for arch, top1 in own.items():
        assert published_accuracy("cifar100", arch).top1 == top1
    # a baseline is the student's own, whoever the teacher
    assert published_figure("cifar100", "resnet110", "resnet20", "baseline").top1 == 69.06
    # N/A in the README, and FSP has no cross-family row: no figure, not a zero
    assert published_figure("cifar100", "wrn_40_2", "wrn_40_1", "fsp") is None
    assert published_figure("cifar100", "vgg13", "mobilenetv2", "fsp") is None
    assert published_figure("cifar100", "resnet110", "resnet20", "dkd").source.name == "ls"
    table = published("cifar100")
    # 15 models alone, 13 x 7 - 1 same-family, 12 x 6 cross-family, 11 DKD figures; CTKD 6,
    # TTM, WTTM and DIST 13 each, WKD-L 2, ICKD 7, SDD 6; logit-standardization-KD's 10 pairs of
    # the grid: MLKD, MLKD+ls, KD+ls, DKD+ls, CTKD+ls and the 4 CTKD and 1 DKD cells no
    # other holds; KD+DOT 3
    assert len(table) == 15 + 90 + 72 + 11 + 6 + 13 + 13 + 13 + 2 + 7 + 6 + 5 * 10 + 5 + 3
    assert published_figure("cifar100", "vgg13", "mobilenetv2", "ickd") is None
    assert all(0 < f.top1 < 100 for f in table.values())
    assert {s.protocol for s in sources().values()} == {"last", "best"}
    assert sources()["repdistiller"].cite() == "HobbitLong/RepDistiller@b84f547 README.md"
    assert published("cifar10") == {}


def test_every_published_cell_is_a_cell_of_the_grid():
    """A row of the tables, or a kdlab method the grid runs on request (methods=ctkd,...)."""
    grid = set(SAME_FAMILY + CROSS_FAMILY)
    for teacher, student, method in published("cifar100"):
        assert method in GRID_METHODS or method in METHODS or method in VARIANTS
        if teacher:
            assert (teacher, student) in grid


def test_pairs_and_methods_are_parsed_with_one_line_errors():
    assert len(parse_pairs("all")) == 13 and len(parse_pairs("cross")) == 6
    assert parse_pairs("resnet14-resnet8,same")[0] == Pair("resnet14", "resnet8")
    assert parse_methods("kd,dkd,kd") == ["kd", "dkd"]
    assert len(parse_methods("all")) == 16
    for bad in ("resnet56", "nosuch-resnet8", ""):
        with pytest.raises(KdlabError, match="pairs"):
            parse_pairs(bad)
    with pytest.raises(KdlabError, match="unknown method 'nosuch'"):
        parse_methods("kd,nosuch")


def test_the_published_variants_plan_their_methods_settings():
    """kd+dot, mlkd and the +ls rows run their kdlab method with the settings they were
    published with (METHOD_ARGS, VARIANTS), each replacing the method's own by key."""
    pairs = [Pair("resnet32x4", "resnet8x4"), Pair("resnet56", "resnet20")]
    methods = parse_methods("mlkd,mlkd+ls,kd+dot,kd+ls,dkd+ls,ctkd+ls")
    plan = build_plan(pairs, methods, 1, [], {}, Path("s"))
    assert not any(cell.unavailable for cell in plan.cells)
    jobs = {job.sub: job for job in plan.jobs}
    dot = jobs["resnet32x4-resnet8x4/kd+dot/seed0"]
    assert (dot.setting("loss"), dot.setting("optim"), dot.setting("alpha")) == ("kd", "dot", "0.1")
    assert [a for a in dot.args if a.startswith("optim=")] == ["optim=dot"]
    ls = jobs["resnet56-resnet20/dkd+ls/seed0"]  # DKD's per-pair beta 2 gives way to 72
    assert [ls.setting(k) for k in ("loss", "T", "loss.beta", "loss.standardize")] == [
        "dkd", "2", "72", "true"]  # fmt: skip
    mlkd = jobs["resnet56-resnet20/mlkd+ls/seed0"]
    assert [mlkd.setting(k) for k in ("loss", "data.views", "T", "loss.weight")] == [
        "mlkd", "weak_strong", "2", "9"]  # fmt: skip
    assert jobs["resnet56-resnet20/kd+ls/seed0"].setting("T") == "2"
    ctkd = jobs["resnet56-resnet20/ctkd+ls/seed0"]  # its temperature is learned
    assert [ctkd.setting(k) for k in ("loss", "loss.standardize", "loss.weight")] == [
        "ctkd", "true", "9"]  # fmt: skip


def test_a_cell_this_kdlab_cannot_run_says_why():
    assert missing(Pair("resnet56", "resnet20"), "kd") == ""
    assert missing(Pair("nosuch", "resnet20"), "kd") == "model nosuch not available in this kdlab"
    assert missing(Pair("nosuch", "resnet20"), "baseline") == ""  # needs no teacher
    assert missing(Pair("resnet56", "resnet20"), "nosuch") == (
        "method nosuch not available in this kdlab"
    )


def test_the_plan_trains_each_teacher_once_and_each_baseline_once_per_seed(tmp_path):
    pairs = parse_pairs("resnet56-resnet20,resnet110-resnet20,resnet110-resnet32")
    plan = build_plan(pairs, ["baseline", "kd", "dkd"], 2, ["trainer.epochs=3"], {}, tmp_path)
    subs = [job.sub for job in plan.jobs]
    assert subs[:2] == ["teacher/resnet56", "teacher/resnet110"]
    assert subs.count("baseline/resnet20/seed1") == 1 and len(subs) == len(set(subs))
    assert len(subs) == 2 + 2 * 2 + 3 * 2 * 2  # teachers, baselines, 3 pairs x 2 methods x 2 seeds
    dkd = next(j for j in plan.jobs if j.sub == "resnet56-resnet20/dkd/seed1")
    assert "loss.beta=2" in dkd.args and "seed=1" in dkd.args and dkd.epochs == 3
    assert f"teacher.ckpt={tmp_path / 'teacher/resnet56'}" in dkd.args
    kd = next(j for j in plan.jobs if j.sub == "resnet56-resnet20/kd/seed0")
    assert {"T=4", "alpha=0.1", "optim.lr=0.05", "sched=multistep"} <= set(kd.args)
    # a given teacher is not trained; mobile students get lr 0.01
    plan = build_plan(parse_pairs("vgg13-mobilenetv2"), ["kd"], 1, [], {"vgg13": "t"}, tmp_path)
    assert [j.sub for j in plan.jobs] == ["vgg13-mobilenetv2/kd/seed0"]
    assert "optim.lr=0.01" in plan.jobs[0].args and "teacher.ckpt=t" in plan.jobs[0].args


def test_a_distill_runs_cost_counts_the_teacher_forward_as_a_third_of_a_step(tmp_path):
    plan = build_plan(parse_pairs("resnet56-resnet20"), ["kd"], 1, [], {}, tmp_path)
    teacher, kd = plan.jobs
    ratio = forward_flops("resnet56") / forward_flops("resnet20")
    assert 2.5 < ratio < 3.5  # 9 vs 27 blocks per stage, the same widths
    assert job_cost(teacher).epochs == 240
    assert job_cost(kd).epochs == pytest.approx(240 * (1 + ratio / 3))
    assert job_cost(kd).flops_per_image == pytest.approx(
        240 * (3 * forward_flops("resnet20") + forward_flops("resnet56"))
    )
    # an init stage adds its epochs: RepDistiller's 30 by default, or loss.init_epochs
    methods = ["ab", "fsp"]
    ab, fsp = build_plan(parse_pairs("resnet56-resnet20"), methods, 1, [], {}, tmp_path).jobs[1:]
    assert (ab.init_epochs, ab.epochs, job_cost(ab).epochs) == (
        30,
        270,
        job_cost(kd).epochs * 270 / 240,
    )
    short = build_plan(
        parse_pairs("resnet56-resnet20"), ["fsp"], 1, ["loss.init_epochs=2"], {}, tmp_path
    )
    assert short.jobs[1].epochs == 242 and fsp.epochs == 270


def write_run(run_dir: Path, best: float, last: float, status: str = "finished") -> None:
    run_dir.mkdir(parents=True)
    summary = {"status": status, "test_acc": best, "last_test_acc": last}
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_our_runs_are_joined_with_the_published_figure_at_its_epoch(tmp_path):
    pairs = parse_pairs("resnet32x4-resnet8x4")
    plan = build_plan(pairs, ["baseline", "kd", "dkd", "at"], 2, [], {}, tmp_path)
    cells = {cell.method: cell for cell in plan.cells}
    for seed, (best, last) in enumerate([(74.0, 73.0), (76.0, 75.0)]):
        write_run(tmp_path / f"resnet32x4-resnet8x4/kd/seed{seed}", best, last)
        write_run(tmp_path / f"resnet32x4-resnet8x4/dkd/seed{seed}", best + 1, last + 1)
        write_run(tmp_path / f"baseline/resnet8x4/seed{seed}", 70.0, 71.0 + seed)
    write_run(tmp_path / "resnet32x4-resnet8x4/at/seed0", 10.0, 10.0, status="failed")
    kd = cell_result(cells["kd"], tmp_path, "cifar100")
    assert (kd.seeds, kd.best.mean, kd.last.mean) == (2, 75.0, 74.0)
    assert kd.last.std == pytest.approx(math.sqrt(2))
    assert kd.delta == pytest.approx(74.0 - 73.33)  # RepDistiller: last epoch
    dkd = cell_result(cells["dkd"], tmp_path, "cifar100")
    assert dkd.delta == pytest.approx(76.0 - 76.32)  # mdistiller: best epoch
    baseline = cell_result(cells["baseline"], tmp_path, "cifar100")
    assert baseline.delta == pytest.approx(71.5 - 72.50)  # the student alone
    at = cell_result(cells["at"], tmp_path, "cifar100")
    assert at.seeds == 0 and at.delta is None and at.note == "2 of 2 runs not finished"
    assert cell_result(cells["kd"], tmp_path, "synthetic").published is None
    paths = write_grid_report(plan, tmp_path, "cifar100", ["# grid"])
    text = paths[0].read_text()
    row = "| resnet32x4-resnet8x4 | kd | 2 | 75.00 ± 1.41 | 74.00 ± 1.41 | 73.33 (last epoch"
    assert row in text
    assert "| +0.67 |" in text and "| -0.32 |" in text
    assert "- teacher resnet32x4: not trained yet" in text
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "resnet32x4-resnet8x4,dkd,2,76.0000" in paths[1].read_text()


def test_a_record_names_its_checkpoint_by_hash_and_the_far_below_warning(tmp_path):
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"weights")
    summary = {"command": "train", "overrides": ["model=resnet56"], "test_acc": 60.0,
               "kdlab_version": "0.1.0"}  # fmt: skip
    record = write_record(ckpt, summary, {"model": {"arch": "resnet56"}}, {"num_classes": 100})
    assert record["sha256"] == sha256_file(ckpt) and len(record["sha256"]) == 64
    provenance = Provenance.of(ckpt)
    assert provenance.intact
    line = provenance.describe()
    assert provenance.short in line and "matches its record" in line and "60.00%" in line
    assert "`kdlab train model=resnet56`" in line
    ckpt.write_bytes(b"other weights")
    assert not Provenance.of(ckpt).intact and "DIFFERS" in Provenance.of(ckpt).describe()
    warning = far_below_published(60.0, "cifar100", "resnet56", "test")
    assert "12.3 points below the published 72.34%" in warning
    assert far_below_published(69.5, "cifar100", "resnet56", "test") is None  # within 3
    assert far_below_published(10.0, "synthetic", "resnet56", "test") is None


def test_the_dry_runs_total_counts_cifar100s_images_only_when_the_runs_train_on_it():
    assert epoch_images(list(RECIPE)) == 45_000  # 50,000 less the 10% val split
    assert epoch_images([*RECIPE, "data.val_split=0"]) == 50_000
    assert epoch_images([*RECIPE, "data=synthetic"]) is None
    assert epoch_images([*RECIPE, "data.train_size=512"]) is None
