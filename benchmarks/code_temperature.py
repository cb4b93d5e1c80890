"""Diagnostic: is a trained RQ-Reg run's served distribution too wide or too
sharp for what it knows?

    python benchmarks/code_temperature.py --run-dir RUN --data VALIDATION.parquet \\
        [--temperatures 0.8,0.9,0.95,1,1.05,1.1,1.25] [--output MD]

Serves the run's rows again with every decoding step's logits divided by a
temperature T (f_pred's output, in the one pass and in the code tree's
branches: every level's softmax, and the expected embeddings the next steps
read), and scores each T as `scale.py` scores a cell: the CRPS on the run's
own quantile grid, the largest quantile calibration gap, Norm-Gini(+) and
Spearman(+) of the served mean and its total against the labels'. T = 1 is
the run as trained (its CRPS is the cell's). T < 1 sharpens every level's
distribution, T > 1 widens it.

If the CRPS is lowest near T = 1, the distribution's spread already suits
what the model knows about each row, and a CRPS gap to another head is in
resolution (how much the distribution moves with x), which no rescaling
after training closes. Run it on the validation split: what it finds may
change the method, and the test split stays unseen.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from _machine import cpu_model
from _runs import emit

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

DEFAULT_TEMPERATURES = (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25)


class _Tempered:
    """f_pred with its logits divided by `temperature` (a variable, so one
    traced function serves every T)."""

    def __init__(self, predictor, temperature):
        self.predictor = predictor
        self.temperature = temperature

    def __call__(self, hidden, *args, **kwargs):
        import tensorflow as tf

        logits = self.predictor(hidden, *args, **kwargs)
        return logits / tf.cast(self.temperature, logits.dtype)


@contextlib.contextmanager
def logit_temperature(decoder, temperature: float = 1.0):
    """Inside the block, `decoder` (an `RQDecoder`) divides every step's
    logits by the yielded variable (start value `temperature`; assign it to
    change T); its own f_pred is back on exit. The layer's attribute is
    swapped without Keras' tracking, so its weights and config stay as
    they are."""
    import tensorflow as tf

    if not hasattr(decoder, "predictor") or not hasattr(decoder, "code_tree"):
        raise TypeError(f"{type(decoder).__name__} is not an RQ decoder (no f_pred and code tree)")
    if not temperature > 0:
        raise ValueError(f"the temperature must be > 0, got {temperature}")
    variable = tf.Variable(float(temperature), trainable=False, dtype=tf.float32)
    own = decoder.predictor
    object.__setattr__(decoder, "predictor", _Tempered(own, variable))
    try:
        yield variable
    finally:
        object.__setattr__(decoder, "predictor", own)


def parse_temperatures(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"temperatures must be numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"temperatures must be > 0, got {text!r}")
    return values


def temperature_scores(model, spec, path: str, temperatures, max_rows: int) -> list[dict]:
    """Per temperature: `served_summary` (code_levels.py) of the served
    outputs over the first `max_rows` rows of the Parquet file `path`."""
    import tensorflow as tf
    from code_levels import served_summary

    decoder = getattr(getattr(model, "task", None), "decoder", None)
    if decoder is None or getattr(decoder, "centroids", None) is None:
        raise SystemExit("not an RQ-Reg run: its model has no RQ decoder with a code tree")
    grid = list(decoder.quantiles)
    if len(grid) < 2:
        raise SystemExit("the run serves fewer than two quantiles: no CRPS to score")
    results = []
    with logit_temperature(decoder) as temperature:
        serve = tf.function(lambda f: model(f, training=False), autograph=False)
        for t in temperatures:
            temperature.assign(t)
            summary = served_summary(serve, spec, path, grid, max_rows, batch_size=4096)
            results.append({"temperature": t, **summary})
            print(f"T = {t:g}: CRPS {summary['crps']:.4f}", file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> list[str]:
    from code_levels import SUMMARY_HEADER, summary_cells

    reference = next((r for r in results if r["temperature"] == 1.0), None)
    lines = [
        f"| T | {SUMMARY_HEADER} | mean: Norm-Gini (all rows) | CRPS - CRPS at T = 1 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        delta = "n/a" if reference is None else f"{r['crps'] - reference['crps']:+.4f}"
        lines.append(
            f"| {r['temperature']:g} | {summary_cells(r)} | {r['mean_gini']:.4f} | {delta} |"
        )
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run-dir", required=True, help="a finished RQ-Reg `train` run")
    p.add_argument("--data", required=True, help="the Parquet rows to serve (validation)")
    p.add_argument(
        "--temperatures",
        type=parse_temperatures,
        default=list(DEFAULT_TEMPERATURES),
        help="comma-separated, each > 0 (1: the run as trained)",
    )
    p.add_argument("--max-rows", type=int, default=1_000_000)
    p.add_argument("--output", default=None, help="also write the Markdown here")
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run_dir, "model.keras")):
        p.error(f"{args.run_dir}: no model.keras (a finished `train` run directory?)")
    if not os.path.isfile(args.data):
        p.error(f"{args.data}: no such file")
    if args.max_rows < 1:
        p.error("--max-rows must be >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    import tf_keras as keras

    from rq_keras.features import FeatureSpec

    spec = FeatureSpec.load(os.path.join(args.run_dir, "feature_spec.yaml"))
    model = keras.models.load_model(os.path.join(args.run_dir, "model.keras"), compile=False)
    results = temperature_scores(model, spec, args.data, args.temperatures, args.max_rows)
    command = "python benchmarks/code_temperature.py " + " ".join(argv or sys.argv[1:])
    text = "\n".join(
        [
            "# The served distribution at other logit temperatures",
            "",
            f"Command: `{command.strip()}`; {results[0]['rows']:,} rows. "
            f"Machine: {os.cpu_count()} CPU cores ({cpu_model()}).",
            "",
            "Every step's logits divided by T (T = 1: the run as trained); CRPS and "
            "calibration on the run's own quantile grid:",
            "",
            *table(results),
        ]
    )
    emit(text, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
