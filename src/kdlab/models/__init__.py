"""Models by name (`model=NAME`; `register_model` adds one from outside kdlab) and their
named feature points for FitNets and the feature methods.

Its names are imported on first use (PEP 562), so `kdlab.models.names` is read without
torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kdlab.lazy import names_on_first_use

if TYPE_CHECKING:
    from kdlab.models.cost import count_macs, weights_megabytes
    from kdlab.models.features import (
        FeatureTap,
        check_feature_point,
        default_feature_point,
        feature_points,
        feature_shape,
        modules_up_to,
        stage_points,
    )
    from kdlab.models.registry import (
        ModelBuilder,
        ModelInfo,
        build_model,
        build_options,
        check_model_choice,
        count_params,
        describe_models,
        freeze_epochs,
        group_options,
        head_parameters,
        model_label,
        model_names,
        register_model,
    )

__all__ = [
    "FeatureTap",
    "ModelBuilder",
    "ModelInfo",
    "build_model",
    "build_options",
    "check_feature_point",
    "check_model_choice",
    "count_macs",
    "count_params",
    "default_feature_point",
    "describe_models",
    "feature_points",
    "feature_shape",
    "freeze_epochs",
    "group_options",
    "head_parameters",
    "model_label",
    "model_names",
    "modules_up_to",
    "register_model",
    "stage_points",
    "weights_megabytes",
]
_HOMES = {  # the module each name of __all__ lives in
    "cost": ("count_macs", "weights_megabytes"),
    "features": (
        "FeatureTap",
        "check_feature_point",
        "default_feature_point",
        "feature_points",
        "feature_shape",
        "modules_up_to",
        "stage_points",
    ),
    "registry": (
        "ModelBuilder",
        "ModelInfo",
        "build_model",
        "build_options",
        "check_model_choice",
        "count_params",
        "describe_models",
        "freeze_epochs",
        "group_options",
        "head_parameters",
        "model_label",
        "model_names",
        "register_model",
    ),
}
__getattr__ = names_on_first_use(__name__, __all__, _HOMES)
