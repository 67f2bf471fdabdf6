"""`kdlab export`, `kdlab predict` and the report's cost columns, on one tiny finished run.

The run (resnet8, one epoch on a generated 16x16 PNG folder whose normalisation is computed
from its images) is trained once for the module. Every export is read back here by the
format's own library, apart from kdlab's own check; predictions are recomputed here from the
PNG files with PIL and the recorded mean/std. Bad inputs are catalogue cases
(catalogue_deploy, run by tests/test_bad_input.py).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from harness import FOLDER_RUN, run_kdlab, succeeded
from kdlab.cli.commands import export as export_command
from kdlab.cli.commands import predict as predict_command
from kdlab.cli.commands.report import write_report
from kdlab.data.imagefolder import write_image_folder
from kdlab.deploy import FORMATS, ExportMismatch, export_model, load_selected
from kdlab.deploy.export import compare
from kdlab.deploy.formats import Loaded
from kdlab.deploy.selected import run_preprocessing
from kdlab.engine.checkpoint import Checkpoint, save_checkpoint
from kdlab.errors import KdlabError
from kdlab.models import build_model, count_macs, weights_megabytes
from readme_snippets import snippet

CLASSES = ("a", "b", "c")
METADATA_KEYS = {"model", "class_names", "image_size", "channels", "mean", "std", "input"}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("export")
    folder = write_image_folder(root / "abc", CLASSES)
    proc = run_kdlab(
        "train", *FOLDER_RUN, f"data.root={folder}", f"hydra.run.dir={root / 'run'}", cwd=root
    )
    succeeded(proc)
    return root / "run"


@pytest.fixture(scope="module")
def state(run) -> Checkpoint:
    return Checkpoint.read(run / "checkpoints" / "best.pt")


def pytorch_logits(state: Checkpoint, batch: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return state.build_model(Path("best.pt")).eval()(batch)


def assert_metadata(metadata: dict, state: Checkpoint, fmt: str) -> None:
    assert set(metadata) >= METADATA_KEYS
    assert metadata["format"] == fmt
    assert metadata["class_names"] == list(CLASSES)
    assert (metadata["image_size"], metadata["channels"]) == (16, 3)
    assert metadata["mean"] == state.mean and metadata["std"] == state.std
    assert metadata["model"] == "resnet8"


def test_the_checkpoint_records_the_normalisation_the_run_computed(run, state):
    """Computed from the train images (an image folder has no standard statistics)."""
    pixels = np.stack(
        [np.asarray(Image.open(p).convert("RGB")) for p in sorted(run.parent.glob("abc/train/*/*"))]
    )
    assert state.image_size == 16
    np.testing.assert_allclose(state.mean, pixels.mean(axis=(0, 1, 2)) / 255, rtol=1e-9)
    np.testing.assert_allclose(state.std, pixels.std(axis=(0, 1, 2)) / 255, rtol=1e-9)


def test_onnx_export_carries_the_metadata_and_matches_pytorch(run, state, tmp_path):
    import onnx
    import onnxruntime

    out = tmp_path / "student.onnx"
    proc = run_kdlab("export", str(run), "--format", "onnx", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime vs PyTorch on 8 images: largest absolute difference" in proc.stdout
    props = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    assert_metadata(props, state, "onnx")
    sidecar = json.loads((tmp_path / "student.onnx.json").read_text())
    assert {k: v for k, v in sidecar.items() if k not in ("file", "check")} == props
    assert sidecar["check"]["max_abs_diff"] <= sidecar["check"]["tolerance"]
    batch = torch.randn(5, 3, 16, 16)  # another batch size than the trace's and the check's
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": batch.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), pytorch_logits(state, batch))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_carries_the_metadata_and_matches_pytorch(run, state, tmp_path):
    out = tmp_path / "student.pt"
    export_command.main([str(run), "--format", "torchscript", "--out", str(out)])
    extra = {"kdlab.json": ""}
    module = torch.jit.load(str(out), _extra_files=extra)
    metadata = json.loads(extra["kdlab.json"])
    assert_metadata(metadata, state, "torchscript")
    assert json.loads(out.with_name("student.pt.json").read_text())["mean"] == state.mean
    batch = torch.randn(3, 3, 16, 16)
    torch.testing.assert_close(module(batch), pytorch_logits(state, batch))


def test_an_existing_out_is_replaced_only_with_force(run, tmp_path):
    out = tmp_path / "student.safetensors"
    out.write_bytes(b"the user's own file")
    with pytest.raises(KdlabError, match=r"student\.safetensors exists: add --force"):
        export_command.main([str(run), "--format", "safetensors", "--out", str(out)])
    assert out.read_bytes() == b"the user's own file"
    export_command.main([str(run), "--format", "safetensors", "--out", str(out), "--force"])
    assert out.read_bytes() != b"the user's own file"
    assert FORMATS["safetensors"].load(out).metadata["format"] == "safetensors"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name, f"{out.name}.json"]


def test_safetensors_export_rebuilds_the_model_from_its_metadata(run, state, tmp_path):
    from safetensors import safe_open

    export_command.main([str(run), "--format", "safetensors"])  # default: beside best.pt
    out = run / "checkpoints" / "best.safetensors"
    with safe_open(str(out), framework="pt") as file:
        metadata = {k: json.loads(v) for k, v in file.metadata().items()}
        tensors = {k: file.get_tensor(k) for k in file.keys()}  # noqa: SIM118
    assert_metadata(metadata, state, "safetensors")
    assert tensors.keys() == state.model.keys()
    for key, tensor in tensors.items():
        assert torch.equal(tensor, state.model[key]), key
    assert (run / "checkpoints" / "best.safetensors.json").is_file()


def test_an_export_that_disagrees_writes_nothing_and_exits_1(run, tmp_path, capsys):
    torchscript = FORMATS["torchscript"]

    def load_off_by_one(path: Path) -> Loaded:
        loaded = torchscript.load(path)
        return Loaded(lambda x: loaded.run(x) + 1e-2, loaded.metadata)

    off = dataclasses.replace(torchscript, load=load_off_by_one)
    with pytest.raises(ExportMismatch, match=r"differ by up to 0\.01 on 8 images"):
        export_model(load_selected(run), off, tmp_path / "model.pt")
    assert list(tmp_path.iterdir()) == []
    reference = torch.zeros(2, 3)
    assert compare(torchscript, reference, reference + 1e-5, 1e-4) == pytest.approx(1e-5)
    with pytest.raises(ExportMismatch):  # NaN is no agreement
        compare(torchscript, reference, reference * float("nan"), 1e-4)


def test_onnx_without_the_extra_says_how_to_install_it(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    install = r"needs onnx and onnxruntime: pip install 'kdlab\[onnx\]'"
    with pytest.raises(KdlabError, match=install):
        export_command.main([str(run), "--format", "onnx"])


def expected_probabilities(state: Checkpoint, png: Path) -> torch.Tensor:
    """The run's preprocessing written out: 16x16 RGB already, (x/255 - mean) / std."""
    pixels = torch.from_numpy(np.array(Image.open(png).convert("RGB"))).permute(2, 0, 1)
    mean = torch.tensor(state.mean).view(3, 1, 1)
    std = torch.tensor(state.std).view(3, 1, 1)
    x = ((pixels.double() / 255 - mean) / std).float()[None]
    return pytorch_logits(state, x).softmax(1)[0]


def test_predict_prints_the_top_k_of_every_image_in_a_folder(run, state, tmp_path):
    folder = run.parent / "abc" / "test"
    proc = run_kdlab("predict", str(run), str(folder), "--top-k", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    pngs = sorted(folder.rglob("*.png"))
    assert [line.split()[0] for line in lines] == [str(p) for p in pngs]
    for line, png in zip(lines, pngs, strict=True):
        probs = expected_probabilities(state, png)
        top = probs.topk(2)
        expected = [(CLASSES[i], f"{p:.1%}") for p, i in zip(*map(list, top), strict=True)]
        assert line.split()[1:] == [token for pair in expected for token in pair]


def test_predict_writes_csv_rows_of_the_runs_probabilities(run, state, tmp_path):
    pngs = [run.parent / "abc" / "test" / "b" / "1.png", run.parent / "abc" / "train" / "c"]
    out = tmp_path / "predictions.csv"
    predict_command.main([str(run), *map(str, pngs), "--top-k", "9", "--csv", str(out)])
    rows = list(csv.DictReader(out.open()))
    files = [pngs[0], *sorted(pngs[1].glob("*.png"))]
    assert len(rows) == len(files) * len(CLASSES)  # top 9 of 3 classes: all 3
    for i, file in enumerate(files):
        mine = rows[i * 3 : i * 3 + 3]
        assert [r["image"] for r in mine] == [str(file)] * 3
        assert [r["rank"] for r in mine] == ["1", "2", "3"]
        probs = expected_probabilities(state, file)
        got = {r["class"]: float(r["probability"]) for r in mine}
        assert got == pytest.approx(dict(zip(CLASSES, probs.tolist(), strict=True)), abs=2e-6)
        assert [float(r["probability"]) for r in mine] == sorted(got.values(), reverse=True)


def test_an_older_checkpoint_gets_the_normalisation_recomputed(run, state, tmp_path):
    older = {**state.to_dict(), "image_size": 0, "mean": [], "std": []}
    save_checkpoint(older, tmp_path / "old.pt")
    recomputed = run_preprocessing(Checkpoint.read(tmp_path / "old.pt"))
    assert recomputed.image_size == 16
    assert list(recomputed.mean) == pytest.approx(state.mean, rel=1e-12)
    assert list(recomputed.std) == pytest.approx(state.std, rel=1e-12)


def test_the_summary_records_size_and_macs_and_the_report_shows_them(run, state, tmp_path):
    summary = json.loads((run / "summary.json").read_text())
    model = state.build_model(run)
    assert summary["macs"] == count_macs(model, (3, 16, 16)) > 0
    assert summary["weights_mb"] == pytest.approx(weights_megabytes(model))
    write_report([run], out=tmp_path / "plain")
    plain = (tmp_path / "plain" / "report.md").read_text()
    assert "| MB | MACs |" in plain and "img/s b1" not in plain
    write_report([run], out=tmp_path / "timed", speed="cpu")
    timed = (tmp_path / "timed" / "report.md").read_text()
    assert "| MB | MACs | img/s b1 | img/s b64 |" in timed and "on cpu, fp32" in timed
    (record,) = csv.DictReader((tmp_path / "timed" / "report.csv").open())
    assert int(record["macs"]) == summary["macs"]
    assert float(record["images_per_s_b1"]) > 0 and float(record["images_per_s_b64"]) > 0


def test_the_docs_onnx_snippet_reads_a_greyscale_export(state, tmp_path, monkeypatch, capsys):
    """The README's standalone ONNX code, run as written on a one-channel export: it must
    take the channel count from the metadata (it once hard-coded RGB)."""
    arch = state.config["model"]["arch"]
    model = build_model(arch, state.num_classes, 1).eval()
    grey = dataclasses.replace(
        state, model=model.state_dict(), in_channels=1, mean=[0.45], std=[0.2]
    )
    checkpoints = tmp_path / "outputs" / "tiny" / "checkpoints"
    save_checkpoint(grey.to_dict(), checkpoints / "best.pt")
    export_model(load_selected(checkpoints / "best.pt"), FORMATS["onnx"], checkpoints / "best.onnx")
    png = tmp_path / "pngs" / "0_disk-stripes.png"
    png.parent.mkdir()
    pixels = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(png)
    monkeypatch.chdir(tmp_path)
    exec(snippet("onnx-predict"), {})
    fitted = ImageOps.fit(Image.open(png).convert("L"), (16, 16))
    x = (torch.from_numpy(np.asarray(fitted, np.float32)) / 255 - 0.45) / 0.2
    with torch.no_grad():
        expected = CLASSES[int(model(x[None, None]).argmax())]
    assert capsys.readouterr().out.splitlines()[-1] == expected
