"""A keras-rs ranking model with rq_keras's RQ-Reg head, on the bundled CDNOW data.

A Keras 3 program from start to serving, what a keras-rs user writes:

1. the CDNOW splits and their feature spec (`rq_keras.datasets`), the spec's
   Keras 3 feature tower (`FeaturePreprocessor.build_keras3_model`) and the
   residual codebook, with `train.py`'s defaults for this data
   (`TrainConfig`: codebook, widths, batch, learning rate, schedule);
2. a DCN tower (`keras_rs.layers.FeatureCross` over the feature vector, then a
   ReLU layer) under `rq_keras.layers.keras3.RQRegHead`, in an
   `RQRegRanker`, trained under `tf.distribute.MirroredStrategy` over two
   logical CPU devices (GPUs, when the machine has them: the same code),
   with scheduled sampling and early stopping on the validation split;
3. the test split scored (Norm-Gini, Spearman, MAE of the served mean, the
   code report of each level against its training marginal);
4. the model exported through Keras 3's export (`keras.export.ExportArchive`,
   by `rq_keras.serving.export_model`: the `serving_default` and `examples`
   signatures, checked in a fresh process), then served by TensorFlow's C++
   SavedModel loader (TF Serving's), whose predictions must equal Python's.

    python examples/keras_rs_cdnow.py --output-dir out/keras_rs [--epochs 50]

`--tower features` drops the keras-rs crosses (the spec's tower alone, the
architecture `train.py` trains in Keras 2: `benchmarks/keras_versions.py`
compares the two). The last line printed is a JSON summary, also written
to `OUTPUT_DIR/summary.json`.
"""

from __future__ import annotations

import os

# A Keras 3 program: `tf.keras` is Keras 3 here too (rq_keras leaves it so).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "0")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

__all__ = ["build_ranker", "main", "predict", "prepare", "score", "serve", "train_ranker"]

SPLITS = ("train", "validation", "test")


def prepare(out: pathlib.Path, config):
    """The CDNOW splits in `out/data`, their spec, files and row counts, the
    adapted feature statistics, the training labels and the fitted codebook."""
    from rq_keras.data.readers import chunk_length, read_chunks
    from rq_keras.datasets import cdnow
    from rq_keras.features.preprocessing import FeaturePreprocessor
    from rq_keras.features.spec import FeatureSpec

    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    cdnow.make(cdnow.BUNDLED_RAW_DIR, data, seed=config.seed, fmt="parquet")
    spec = FeatureSpec.load(data / "feature_spec.yaml")
    train, validation, test = ([str(data / f"{split}.parquet")] for split in SPLITS)
    labels = []

    def train_chunks():  # one pass: the statistics and the labels
        for chunk in read_chunks(train[0], spec):
            labels.append(chunk[spec.label.name])
            yield chunk

    preprocessor = FeaturePreprocessor(spec).adapt(train_chunks())
    y_train = np.concatenate(labels)
    quantizer = config.quantizer.build(
        spec.label.clip_min, spec.label.clip_max, labels=y_train
    ).fit(y_train)
    files = {"train": train, "validation": validation, "test": test}
    rows = {"train": len(y_train)}
    for split in ("validation", "test"):
        rows[split] = sum(chunk_length(c) for c in read_chunks(files[split][0], spec))
    return spec, files, rows, preprocessor, y_train, quantizer


def build_ranker(preprocessor, quantizer, config, tower: str = "dcn", crosses: int = 2):
    """The Keras 3 ranking model: the spec's feature tower, with `crosses`
    keras-rs `FeatureCross` layers and a ReLU layer when `tower` is "dcn",
    under the RQ-Reg head of `config.model`."""
    import keras

    from rq_keras.layers.keras3 import RQRegHead, RQRegRanker

    features = preprocessor.build_keras3_model(seed=config.seed)
    if tower == "dcn":
        import keras_rs

        x0 = x = features.output
        for i in range(crosses):
            x = keras_rs.layers.FeatureCross(name=f"feature_cross_{i}")(x0, x)
        x = keras.layers.Dense(config.model.encoder_units, activation="relu", name="deep")(x)
        features = keras.Model(features.inputs, x, name="dcn_tower")
    elif tower != "features":
        raise ValueError(f"tower must be 'dcn' or 'features', got {tower!r}")
    head = RQRegHead.from_quantizer(quantizer, config=config.model)
    return RQRegRanker(features, head, name="ranker")


def train_ranker(config, spec, files, rows, build, strategy, verbose: int = 0):
    """Builds (with `build()`) and trains the ranker under `strategy` as
    `train.py` trains its model: shuffled passes, `config`'s batch, learning
    rate and epochs, scheduled sampling (Eq. 17) and early stopping on the
    validation split with the best epoch's weights restored. Returns
    `(model, history, best_epoch)` (1-based)."""
    import keras

    from rq_keras.data.pipeline import make_dataset
    from rq_keras.layers.keras3 import ScheduledSampling

    batch = config.resolved_batch_size(rows["train"])

    def data(split, training):
        return make_dataset(
            files[split], spec, batch_size=batch, shuffle=training, seed=config.seed,
            repeat=True,  # validation: the same rows in file order at every epoch
        )  # fmt: skip

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build()
        model.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    early = keras.callbacks.EarlyStopping(
        monitor=config.resolved_monitor,
        patience=config.patience,
        min_delta=config.min_delta,
        mode="min",
        restore_best_weights=True,
    )
    callbacks = [ScheduledSampling(config.sampling_k, config.sampling_t0), early]
    history = model.fit(
        data("train", True),
        validation_data=data("validation", False),
        epochs=config.epochs,
        steps_per_epoch=math.ceil(rows["train"] / batch),  # an epoch: one pass
        validation_steps=math.ceil(rows["validation"] / batch),
        shuffle=False,  # the pipeline shuffles, pass by pass
        callbacks=callbacks,
        verbose=verbose,
    )
    history = history.history
    best = int(np.argmin(history[config.resolved_monitor])) + 1
    return model, history, best


def predict(model, spec, paths, keys=("prediction", "positive_mean"), on_batch=None):
    """`(labels, outputs)` of the files at `paths`, batch by batch; each batch's
    labels and outputs also go to `on_batch(labels, outputs)`."""
    import tensorflow as tf

    from rq_keras.data.pipeline import make_dataset

    @tf.function(reduce_retracing=True)
    def step(features):
        return model(features, training=False)

    labels, parts = [], {k: [] for k in keys}
    for features, label in make_dataset(paths, spec, batch_size=1024):
        out = {k: v.numpy() for k, v in step(features).items()}
        labels.append(label.numpy().astype(np.float64))
        for key in keys:
            parts[key].append(out[key].astype(np.float64))
        if on_batch is not None:
            on_batch(labels[-1], out)
    return np.concatenate(labels), {k: np.concatenate(v) for k, v in parts.items()}


def score(model, spec, files, quantizer, y_train) -> dict:
    """Test metrics of the served mean and of E[y | y > 0], and the code
    report (each level's accuracy and NLL against its training marginal)."""
    from rq_keras.evaluation.code_report import CodeReport
    from rq_keras.evaluation.metrics import evaluate

    report = CodeReport(
        quantizer.encode(y_train),
        quantizer.fitted_codebook_sizes,
        quantizer.token_offsets,
        zero_token=quantizer.zero_token,
    )

    def codes(labels, out):
        report.update(out["logits"], out["codes"], quantizer.encode(labels))

    y, outputs = predict(model, spec, files["test"], on_batch=codes)
    return {
        "prediction": evaluate(y, outputs["prediction"]),
        "positive_mean": evaluate(y, outputs["positive_mean"]),
        "mean_label": float(y.mean()),
        "mean_prediction": float(outputs["prediction"].mean()),
        "codes": report.result(),
    }


def serve(model, spec, files, export_base: pathlib.Path, rows: int = 64) -> dict:
    """Exports `model` (Keras 3's export, checked) and serves `rows` test rows
    through the C++ SavedModel loader; fails unless C++ gives Python's
    predictions (1e-5; the codes exactly)."""
    from rq_keras.serving import cpp_check
    from rq_keras.serving.export import export_model
    from rq_keras.serving.export_checks import read_rows
    from rq_keras.serving.signatures import feature_tensors, serialize_examples

    held_out = read_rows(files["test"], spec, rows)
    result = export_model(model, spec, export_base, check_rows=held_out)
    examples = np.array(serialize_examples(spec, held_out), dtype=object)
    served = cpp_check.run(result.export_dir, "examples", {"examples": examples}).outputs
    python = model(feature_tensors(spec, held_out), training=False)
    worst = 0.0
    for key in ("prediction", "mean", "positive_mean", "quantiles"):
        want = np.asarray(python[key], np.float64)
        gap = np.abs(served[key] - want) / np.maximum(np.abs(want), 1e-3)
        worst = max(worst, float(gap.max()))
    if worst > 1e-5 or not np.array_equal(served["codes"], np.asarray(python["codes"])):
        raise RuntimeError(f"the C++ loader's outputs differ from Python's (relative {worst:.2e})")
    return {
        "export_dir": result.export_dir,
        "served_rows": rows,
        "cpp_max_relative_gap": worst,
        "first_row": {
            "prediction": float(served["prediction"][0]),
            "codes": served["codes"][0].tolist(),
        },
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--output-dir", default="out/keras_rs", help="splits and the export go here")
    p.add_argument("--epochs", type=int, default=None, help="default: train.py's for CDNOW")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tower", choices=("dcn", "features"), default="dcn")
    p.add_argument("--devices", type=int, default=2, help="logical CPU devices to mirror over")
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2))
    args = p.parse_args(argv)

    import tensorflow as tf

    from rq_keras.config.configs import TrainConfig

    # The CPU split into logical devices before TensorFlow's first op; on a
    # GPU host the strategy mirrors over the GPUs instead.
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices
        )
    strategy = tf.distribute.MirroredStrategy()
    config = TrainConfig(dataset="cdnow").seeded(args.seed)
    if args.epochs is not None:
        config = dataclasses.replace(config, epochs=args.epochs)
    out = pathlib.Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec, files, rows, preprocessor, y_train, quantizer = prepare(out, config)

    def build():
        return build_ranker(preprocessor, quantizer, config, args.tower)

    started = time.perf_counter()
    model, history, best_epoch = train_ranker(
        config, spec, files, rows, build, strategy, args.verbose
    )
    train_seconds = time.perf_counter() - started
    # The trained weights in a strategy-free copy, for scoring and export.
    plain = build()
    plain(_first_batch(spec, files), training=False)
    plain.set_weights(model.get_weights())
    summary = {
        "keras": __import__("keras").__version__,
        "replicas": strategy.num_replicas_in_sync,
        "tower": args.tower,
        "seed": args.seed,
        "epochs_run": len(history["loss"]),
        "best_epoch": best_epoch,
        "train_seconds": round(train_seconds, 1),
        "test": score(plain, spec, files, quantizer, y_train),
    }
    base = out / "serving"
    if base.exists():
        shutil.rmtree(base)
    summary["serving"] = serve(plain, spec, files, base)
    served = summary["serving"]
    test = summary["test"]["prediction"]
    print(
        f"test: Norm-Gini {test['normalized_gini']:.4f}, Spearman {test['spearman']:.4f}, "
        f"MAE {test['mae']:.4f}; served by C++ from {served['export_dir']} "
        f"(row 1: {served['first_row']['prediction']:.4f}, codes {served['first_row']['codes']})"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


def _first_batch(spec, files):
    from rq_keras.data.pipeline import make_dataset

    features, _ = next(iter(make_dataset(files["test"], spec, batch_size=8)))
    return features


if __name__ == "__main__":
    sys.exit(main())
