"""A finished run's model put to use: exported (ONNX, TorchScript, safetensors) and checked,
predicting on image files, and timed."""

from kdlab.deploy.export import ExportMismatch, ExportResult, default_output, export_model
from kdlab.deploy.formats import FORMATS, ExportFormat
from kdlab.deploy.predict import Prediction, image_files, predict
from kdlab.deploy.selected import Preprocessing, SelectedModel, load_selected
from kdlab.deploy.speed import BATCHES, run_speed

__all__ = [
    "BATCHES",
    "FORMATS",
    "ExportFormat",
    "ExportMismatch",
    "ExportResult",
    "Prediction",
    "Preprocessing",
    "SelectedModel",
    "default_output",
    "export_model",
    "image_files",
    "load_selected",
    "predict",
    "run_speed",
]
