"""The test-split evaluation of a trained run: the model's outputs row by row,
the metrics, `predictions.parquet` and the plots."""

from __future__ import annotations

import pathlib

import numpy as np

from rq_keras.atomic import atomic_path, temporary_name
from rq_keras.config.choices import PREDICTIONS

__all__ = [
    "EVALUATED",
    "code_sequence_embeddings",
    "embedding_grid",
    "evaluate_run",
    "predict_outputs",
    "write_predictions",
]


# Per-row outputs of the evaluation, beside the label (predictions.parquet).
EVALUATED = (
    "prediction",
    *PREDICTIONS,
    "positive_probability",
    "quantiles",
    "exceedance",
    "codes",
)


def predict_outputs(model, dataset, quantizer=None, code_report=None):
    """(labels, outputs) of a dataset, batch by batch, in order.

    `outputs` maps each of `EVALUATED` the model returns to its rows
    (float64, `codes` int). With a `CodeReport` (and the quantizer that codes
    the labels), the decoder's logits of each batch are scored against the
    true codes.
    """
    import tensorflow as tf

    keys = EVALUATED + (("logits",) if code_report is not None else ())

    @tf.function(reduce_retracing=True, autograph=False)
    def step(features):
        out = model(features, training=False)
        return {k: out[k] for k in keys if k in out}

    labels, parts = [], {}
    for features, label in dataset:
        out = {k: v.numpy() for k, v in step(features).items()}
        labels.append(label.numpy())
        for key in EVALUATED:
            if key in out:
                parts.setdefault(key, []).append(out[key])
        if code_report is not None:
            true = quantizer.encode(labels[-1].astype(np.float64))
            code_report.update(out["logits"], out["codes"], true)
    outputs = {
        k: np.concatenate(v) if k == "codes" else np.concatenate(v).astype(np.float64)
        for k, v in parts.items()
    }
    return np.concatenate(labels).astype(np.float64), outputs


def embedding_grid(y_train, quantizer, points: int = 400) -> np.ndarray:
    """Target values for the embedding picture: quantiles of the (clipped)
    training labels, distinct."""
    y = quantizer.clip(np.asarray(y_train, dtype=np.float64))
    return np.unique(np.quantile(y, np.linspace(0.0, 1.0, points)))


def code_sequence_embeddings(model, quantizer, values) -> np.ndarray:
    """`[e(q_1); ...; e(q_L)]` of each value's codes, from an RQ-Reg model's
    decoder table: float64 `(n, L * D)` (the picture of the paper's Figure 3)."""
    tokens = quantizer.codes_to_tokens(quantizer.encode(np.asarray(values, dtype=np.float64)))
    table = np.asarray(model.decoder.code_embeddings.numpy(), dtype=np.float64)
    return table[tokens].reshape(tokens.shape[0], -1)


def write_predictions(path: pathlib.Path, y_true, outputs, model_config) -> None:
    """predictions.parquet: the label and every per-row output (2-D ones one
    column each: `code_1`.., `quantile_0.1`.., `p_above_0`..)."""
    import pandas as pd

    from rq_keras.evaluation.output_columns import output_columns

    columns = output_columns(
        outputs, quantiles=model_config.quantiles, thresholds=model_config.thresholds
    )
    frame = pd.DataFrame({"label": y_true, **columns})
    with atomic_path(path, tmp_name=temporary_name(path)) as tmp:
        frame.to_parquet(tmp, index=False)


def evaluate_run(model, config, spec, quantizer, y_train, test_files, out: pathlib.Path, result):
    """Scores a trained run's model on the test files and writes
    `predictions.parquet` and the plots into `out`.

    Returns:
        `(test metrics, plots)`: metrics.json's `test` entry (the metrics of
        the served prediction, the trivial predictors, the code report, every
        prediction type, the distribution and decile calibration) and plot
        name -> path.
    """
    from rq_keras.data.pipeline import make_dataset
    from rq_keras.evaluation import calibration
    from rq_keras.evaluation import plots as plot_lib
    from rq_keras.evaluation.code_report import CodeReport
    from rq_keras.evaluation.distribution_metrics import distribution_report
    from rq_keras.evaluation.metrics import evaluate, trivial_predictors

    code_report = None
    coded = config.head in ("rq_reg", "kmeans")
    if coded:
        code_report = CodeReport(
            quantizer.encode(y_train),
            quantizer.fitted_codebook_sizes,
            quantizer.token_offsets,
            zero_token=quantizer.zero_token,
        )
    # 1,024: with `exact_levels` >= 1 the code tree multiplies the decoder's
    # rows by K_1.
    test_data = make_dataset(
        test_files, spec, batch_size=1024, parquet_reader=config.parquet_reader
    )
    y_true, outputs = predict_outputs(model, test_data, quantizer, code_report)
    y_pred = outputs["prediction"]
    metrics = evaluate(y_true, y_pred)
    metrics["trivial"] = trivial_predictors(y_train, y_true)
    if code_report is not None:
        metrics["codes"] = code_report.result()
    # Every prediction type the model has (ZILN: its positive_mean).
    kinds = [k for k in PREDICTIONS if k in outputs]
    if kinds:
        metrics["prediction_type"] = config.model.prediction if "mean" in outputs else "mean"
        metrics["by_prediction"] = {k: evaluate(y_true, outputs[k]) for k in kinds}
    if "mean" in outputs:
        metrics["distribution"] = distribution_report(
            y_true,
            outputs["quantiles"],
            config.model.quantiles,
            outputs.get("exceedance"),
            config.model.thresholds,
        )
    metrics["decile_calibration"] = calibration.decile_calibration(y_true, y_pred)
    write_predictions(out / "predictions.parquet", y_true, outputs, config.model)
    title = config.dataset or spec.name
    plots = calibration.write_plots(
        y_true,
        y_pred,
        result.history,
        out / "plots",
        title=title,
        best_epoch=result.best_epoch,
        epochs=config.epochs,
    )
    if "exceedance" in outputs:
        plots["reliability"] = plot_lib.write_reliability_plot(
            metrics["distribution"]["exceedance"], out / "plots", title=title
        )
    if coded:
        values = embedding_grid(y_train, quantizer)
        plots["embedding"] = plot_lib.write_embedding_plot(
            values, code_sequence_embeddings(model, quantizer, values), out / "plots", title=title
        )
    return metrics, plots
