"""The import paths of rq_keras 0.2, kept for one release (removed in 0.4).

rq_keras 0.3 groups the modules by concept (CHANGELOG.md lists every moved
name). An old module path still imports, from a stub in this directory that
`rq_keras/__init__.py` puts on the package's path, and an old name still
resolves, through `module_getattr`; each use warns with a
`DeprecationWarning` that names the new path. Nothing here is imported
unless old code asks for it.
"""

from __future__ import annotations

import importlib
import warnings

# old module -> old name -> "new.module:new_name" (the name's one public path).
MOVED = {
    "rq_keras": {
        "build_head_model": "rq_keras.models.baselines:build_baseline_model",
    },
    "rq_keras.callbacks": {
        "EarlyStoppingCheckpoint": "rq_keras.training.callbacks:EarlyStoppingCheckpoint",
        "EpochHistory": "rq_keras.training.callbacks:EpochHistory",
        "EpochTimer": "rq_keras.training.callbacks:EpochTimer",
        "NonFiniteLossError": "rq_keras.training.callbacks:NonFiniteLossError",
        "ScheduledSampling": "rq_keras.training.callbacks:ScheduledSampling",
        "StopOnNonFiniteLoss": "rq_keras.training.callbacks:StopOnNonFiniteLoss",
        "read_history": "rq_keras.training.callbacks:read_history",
        "sampling_probability": "rq_keras.layers.decoding:sampling_probability",
    },
    "rq_keras.cli": {
        "build_export_parser": "rq_keras.cli.export:build_export_parser",
        "build_predict_parser": "rq_keras.cli.predict:build_predict_parser",
        "build_train_parser": "rq_keras.cli.train:build_train_parser",
        "export_main": "rq_keras.cli.export:export_main",
        "format_metrics": "rq_keras.cli.train:format_metrics",
        "parse_key_value": "rq_keras.cli.train:parse_key_value",
        "predict_main": "rq_keras.cli.predict:predict_main",
        "train_main": "rq_keras.cli.train:train_main",
    },
    "rq_keras.clustering1d": {
        "Sorted1D": "rq_keras.quantizer.clustering1d:Sorted1D",
        "kmeanspp_partition": "rq_keras.quantizer.clustering1d:kmeanspp_partition",
        "lloyd": "rq_keras.quantizer.clustering1d:lloyd",
        "optimal_partition": "rq_keras.quantizer.clustering1d:optimal_partition",
        "quantile_partition": "rq_keras.quantizer.clustering1d:quantile_partition",
    },
    "rq_keras.code_report": {
        "CodeReport": "rq_keras.evaluation.code_report:CodeReport",
    },
    "rq_keras.codebook_json": {
        "FORMAT_NAME": "rq_keras.quantizer.codebook_json:FORMAT_NAME",
        "FORMAT_VERSION": "rq_keras.quantizer.codebook_json:FORMAT_VERSION",
    },
    "rq_keras.codebook_report": {
        "plot_codebook": "rq_keras.quantizer.codebook_report:plot_codebook",
        "reconstruction_report": "rq_keras.quantizer.codebook_report:reconstruction_report",
    },
    "rq_keras.config_loading": {
        "apply_overrides": "rq_keras.config:apply_overrides",
    },
    "rq_keras.data": {
        "make_example": "rq_keras.data.examples:make_example",
    },
    "rq_keras.distribution_metrics": {
        "distribution_report": "rq_keras.evaluation.distribution_metrics:distribution_report",
    },
    "rq_keras.export": {
        "ExportCheckError": "rq_keras.serving.errors:ExportCheckError",
        "ExportError": "rq_keras.serving.errors:ExportError",
        "ExportResult": "rq_keras.serving.export:ExportResult",
        "OUTPUTS": "rq_keras.serving.signatures:OUTPUTS",
        "build_serving_module": "rq_keras.serving.signatures:build_serving_module",
        "export_model": "rq_keras.serving.export:export_model",
        "latest_version": "rq_keras.serving.export:latest_version",
        "load_run": "rq_keras.serving.export:load_run",
        "next_version": "rq_keras.serving.export:next_version",
        "remove_stale_temporaries": "rq_keras.serving.export:remove_stale_temporaries",
        "serialize_examples": "rq_keras.serving.signatures:serialize_examples",
    },
    "rq_keras.export_checks": {
        "PYTHON_OPS": "rq_keras.serving.export_checks:PYTHON_OPS",
        "TOLERANCE": "rq_keras.serving.export_checks:TOLERANCE",
        "WARMUP_FILE": "rq_keras.serving.export_checks:WARMUP_FILE",
        "check_in_fresh_process": "rq_keras.serving.export_checks:check_in_fresh_process",
        "python_ops": "rq_keras.serving.export_checks:python_ops",
        "read_rows": "rq_keras.serving.export_checks:read_rows",
        "write_warmup": "rq_keras.serving.export_checks:write_warmup",
    },
    "rq_keras.export_errors": {
        "ExportCheckError": "rq_keras.serving.errors:ExportCheckError",
        "ExportError": "rq_keras.serving.errors:ExportError",
    },
    "rq_keras.feature_validation": {
        "FeatureSpecError": "rq_keras.features:FeatureSpecError",
    },
    "rq_keras.heads": {
        "BaselineTask": "rq_keras.models.baselines:BaselineTask",
        "HEADS": "rq_keras.losses:BASELINE_HEADS",
        "HeadModel": "rq_keras.models.baselines:BaselineModel",
        "build_head_model": "rq_keras.models.baselines:build_baseline_model",
        "head_per_example_loss": "rq_keras.models.baselines:baseline_per_example_loss",
        "head_predictions": "rq_keras.models.baselines:baseline_predictions",
    },
    "rq_keras.labels": {
        "as_label_array": "rq_keras.features:as_label_array",
        "auto_zero_threshold": "rq_keras.features:auto_zero_threshold",
    },
    "rq_keras.losses": {
        "HEADS": "rq_keras.losses:BASELINE_HEADS",
        "HEAD_LOSSES": "rq_keras.losses:BASELINE_LOSSES",
        "HeadLoss": "rq_keras.losses:BaselineLoss",
        "head_loss": "rq_keras.losses:baseline_loss",
    },
    "rq_keras.losses.heads": {
        "HEADS": "rq_keras.losses:BASELINE_HEADS",
        "HEAD_LOSSES": "rq_keras.losses:BASELINE_LOSSES",
        "HeadLoss": "rq_keras.losses:BaselineLoss",
        "HuberLoss": "rq_keras.losses:HuberLoss",
        "LogMSELoss": "rq_keras.losses:LogMSELoss",
        "MSELoss": "rq_keras.losses:MSELoss",
        "ZILNLoss": "rq_keras.losses:ZILNLoss",
        "head_loss": "rq_keras.losses:baseline_loss",
    },
    "rq_keras.metrics": {
        "CodeReport": "rq_keras.evaluation.code_report:CodeReport",
        "evaluate": "rq_keras.evaluation.metrics:evaluate",
        "mae": "rq_keras.evaluation.metrics:mae",
        "normalized_gini": "rq_keras.evaluation.metrics:normalized_gini",
        "normalized_gini_positive": "rq_keras.evaluation.metrics:normalized_gini_positive",
        "spearman": "rq_keras.evaluation.metrics:spearman",
        "spearman_positive": "rq_keras.evaluation.metrics:spearman_positive",
        "trivial_predictors": "rq_keras.evaluation.metrics:trivial_predictors",
        "value_calibration": "rq_keras.evaluation.metrics:value_calibration",
        "xauc": "rq_keras.evaluation.metrics:xauc",
        "xauc_tie_aware": "rq_keras.evaluation.metrics:xauc_tie_aware",
    },
    "rq_keras.model": {
        "ModelConfig": "rq_keras.config:ModelConfig",
        "RQRegModel": "rq_keras.models.rq_reg:RQRegModel",
        "RankingModel": "rq_keras.models.ranking_model:RankingModel",
        "build_decoder": "rq_keras.models.rq_reg:build_decoder",
        "build_model": "rq_keras.models.rq_reg:build_model",
        "loss_config": "rq_keras.layers.assembly:loss_config",
        "regression_targets": "rq_keras.layers.assembly:regression_targets",
    },
    "rq_keras.output_tables": {
        "OUTPUT_SUFFIXES": "rq_keras.serving.output_tables:OUTPUT_SUFFIXES",
        "ParquetTable": "rq_keras.serving.output_tables:ParquetTable",
        "TextTable": "rq_keras.serving.output_tables:TextTable",
        "output_columns": "rq_keras.evaluation.output_columns:output_columns",
        "output_levels": "rq_keras.evaluation.output_columns:output_levels",
    },
    "rq_keras.plots": {
        "plot_calibration": "rq_keras.evaluation.plots:plot_calibration",
        "plot_distribution": "rq_keras.evaluation.plots:plot_distribution",
        "plot_gain": "rq_keras.evaluation.plots:plot_gain",
        "plot_loss_curves": "rq_keras.evaluation.plots:plot_loss_curves",
        "project_2d": "rq_keras.evaluation.plots:project_2d",
        "write_embedding_plot": "rq_keras.evaluation.plots:write_embedding_plot",
        "write_reliability_plot": "rq_keras.evaluation.plots:write_reliability_plot",
    },
    "rq_keras.predict": {
        "OUTPUT_SUFFIXES": "rq_keras.serving.output_tables:OUTPUT_SUFFIXES",
        "PredictError": "rq_keras.serving.errors:PredictError",
        "PredictResult": "rq_keras.serving.predict:PredictResult",
        "output_columns": "rq_keras.evaluation.output_columns:output_columns",
        "output_levels": "rq_keras.evaluation.output_columns:output_levels",
        "predict_files": "rq_keras.serving.predict:predict_files",
    },
    "rq_keras.predict_errors": {
        "PredictError": "rq_keras.serving.errors:PredictError",
    },
    "rq_keras.preprocessing": {
        "FeaturePreprocessor": "rq_keras.features.preprocessing:FeaturePreprocessor",
    },
    "rq_keras.progress": {
        "RowTicker": "rq_keras.data.progress:RowTicker",
    },
    "rq_keras.quantization": {
        "ResidualQuantizer": "rq_keras.quantizer:ResidualQuantizer",
    },
    "rq_keras.quantize": {
        "build_parser": "rq_keras.cli.quantize:build_parser",
        "main": "rq_keras.cli.quantize:main",
        "run": "rq_keras.cli.quantize:run",
    },
    "rq_keras.report": {
        "cumulative_gain": "rq_keras.evaluation.calibration:cumulative_gain",
        "decile_calibration": "rq_keras.evaluation.calibration:decile_calibration",
        "project_2d": "rq_keras.evaluation.plots:project_2d",
        "write_embedding_plot": "rq_keras.evaluation.plots:write_embedding_plot",
        "write_plots": "rq_keras.evaluation.calibration:write_plots",
        "write_reliability_plot": "rq_keras.evaluation.plots:write_reliability_plot",
    },
    "rq_keras.residual_fit": {
        "fit_levels": "rq_keras.quantizer.residual_fit:fit_levels",
    },
    "rq_keras.run_dir": {
        "ARTIFACTS": "rq_keras.training.run_dir:ARTIFACTS",
        "MANIFEST": "rq_keras.training.run_dir:MANIFEST",
        "OWNED": "rq_keras.training.run_dir:OWNED",
        "RunDir": "rq_keras.training.run_dir:RunDir",
        "RunDirError": "rq_keras.training:RunDirError",
        "STAGING": "rq_keras.training.run_dir:STAGING",
        "held_out_files": "rq_keras.training.run_dir:held_out_files",
        "load_model": "rq_keras.training.run_dir:load_model",
        "load_trained": "rq_keras.training.run_dir:load_trained",
        "read_yaml": "rq_keras.training.run_dir:read_yaml",
    },
    "rq_keras.scorers": {
        "Scorer": "rq_keras.serving.scorers:Scorer",
        "load_run_scorer": "rq_keras.serving.scorers:load_run_scorer",
        "load_saved_model_scorer": "rq_keras.serving.scorers:load_saved_model_scorer",
    },
    "rq_keras.seeds": {
        "OFFSETS": "rq_keras.config.seeds:OFFSETS",
        "sub_seed": "rq_keras.config.seeds:sub_seed",
    },
    "rq_keras.serving": {
        "SIGNATURES": "rq_keras.serving.client:SIGNATURES",
        "example_from_dict": "rq_keras.data.examples:example_from_dict",
        "make_example": "rq_keras.data.examples:make_example",
        "rest_request": "rq_keras.serving.client:rest_request",
        "serialize_example": "rq_keras.data.examples:serialize_example",
    },
    "rq_keras.serving_check": {
        "ServingCheckError": "rq_keras.serving.cpp_check:ServingCheckError",
        "ServingCheckResult": "rq_keras.serving.cpp_check:ServingCheckResult",
        "build": "rq_keras.serving.cpp_check:build",
        "build_dir": "rq_keras.serving.cpp_check:build_dir",
        "run": "rq_keras.serving.cpp_check:run",
        "write_inputs": "rq_keras.serving.cpp_check:write_inputs",
    },
    "rq_keras.serving_signatures": {
        "OUTPUTS": "rq_keras.serving.signatures:OUTPUTS",
        "build_serving_module": "rq_keras.serving.signatures:build_serving_module",
        "feature_tensors": "rq_keras.serving.signatures:feature_tensors",
        "serialize_examples": "rq_keras.serving.signatures:serialize_examples",
    },
    "rq_keras.task": {
        "HeadTask": "rq_keras.models.head:HeadTask",
        "RQRegTask": "rq_keras.models.rq_reg:RQRegTask",
        "build_decoder": "rq_keras.models.rq_reg:build_decoder",
        "clip_labels": "rq_keras.losses.terms:clip_labels",
        "loss_config": "rq_keras.layers.assembly:loss_config",
        "regression_targets": "rq_keras.layers.assembly:regression_targets",
    },
    "rq_keras.tokens": {
        "START_TOKEN": "rq_keras.quantizer.tokens:START_TOKEN",
        "ZERO_CODE": "rq_keras.quantizer.tokens:ZERO_CODE",
        "ZERO_TOKEN": "rq_keras.quantizer.tokens:ZERO_TOKEN",
        "decision_boundaries": "rq_keras.quantizer.tokens:decision_boundaries",
        "special_tokens": "rq_keras.quantizer.tokens:special_tokens",
        "token_offsets_for": "rq_keras.quantizer.tokens:token_offsets_for",
    },
    "rq_keras.training": {
        "HEAD_CHOICES": "rq_keras.config:HEAD_CHOICES",
        "MONITORS": "rq_keras.config:MONITORS",
        "PREDICTIONS": "rq_keras.config:PREDICTIONS",
        "QuantizerConfig": "rq_keras.config:QuantizerConfig",
        "STRATEGIES": "rq_keras.config:STRATEGIES",
        "TrainConfig": "rq_keras.config:TrainConfig",
        "apply_overrides": "rq_keras.config:apply_overrides",
        "config_from_dict": "rq_keras.config:config_from_dict",
        "load_config": "rq_keras.config:load_config",
    },
}

# Old modules that are gone; each has a stub here.
GONE = (
    "rq_keras.callbacks",
    "rq_keras.clustering1d",
    "rq_keras.code_report",
    "rq_keras.codebook_json",
    "rq_keras.codebook_report",
    "rq_keras.config_loading",
    "rq_keras.distribution_metrics",
    "rq_keras.export",
    "rq_keras.export_checks",
    "rq_keras.export_errors",
    "rq_keras.feature_validation",
    "rq_keras.heads",
    "rq_keras.labels",
    "rq_keras.losses.heads",
    "rq_keras.metrics",
    "rq_keras.model",
    "rq_keras.output_tables",
    "rq_keras.plots",
    "rq_keras.predict",
    "rq_keras.predict_errors",
    "rq_keras.preprocessing",
    "rq_keras.progress",
    "rq_keras.quantization",
    "rq_keras.quantize",
    "rq_keras.report",
    "rq_keras.residual_fit",
    "rq_keras.run_dir",
    "rq_keras.scorers",
    "rq_keras.seeds",
    "rq_keras.serving_check",
    "rq_keras.serving_signatures",
    "rq_keras.task",
    "rq_keras.tokens",
)


def new_path(module: str, name: str) -> str | None:
    """The public path (`rq_keras.x.y.Name`) that replaces `module.name`, or None."""
    target = MOVED.get(module, {}).get(name)
    return None if target is None else target.replace(":", ".")


def module_getattr(module: str, stacklevel: int = 2):
    """A module `__getattr__` that resolves the old names of `module`, warning
    (`stacklevel`: the user's frame, as `warnings.warn` counts it)."""

    def __getattr__(name: str):
        target = MOVED.get(module, {}).get(name)
        if target is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new_module, new_name = target.split(":")
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in rq_keras 0.4; "
            f"use {new_module}.{new_name}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(new_module), new_name)

    return __getattr__


def warn_command(old: str, new: str) -> None:
    """Warns that `python -m old` is deprecated in favour of `python -m new`."""
    warnings.warn(
        f"`python -m {old}` is deprecated and will be removed in rq_keras 0.4; "
        f"use `python -m {new}`",
        DeprecationWarning,
        stacklevel=2,
    )
