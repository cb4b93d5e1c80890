"""Does the code classifier learn? RQ-Reg variants on the validation split.

    python benchmarks/code_learning.py [--seeds 0,1] [--set model.regressor_input=stopped ...]

For issue 14 (the level-1 code classifier of the paper's objective scores
worse than the marginal code distribution on CDNOW). Each variant trains
RQ-Reg with `benchmarks/quality.py`'s settings (width 128, batch 1,024, at
most 12 epochs, early stopping on the validation MAE) and is scored on the
VALIDATION split only (the test split stays unseen while settings are
chosen): per code level the NLL against the marginal and the accuracy
against the most frequent code (`rq_keras.metrics.CodeReport`), the total
value (mean prediction / mean label), MAE and the (+) ranking metrics.
Each run is also scored with the sum of the centroids' expectations under the
classifier's softmax (the mean the classifier alone implies). Writes
`benchmarks/results/code_learning.md`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

from _machine import cpu_model, write_results
from quality import base_config, run_one, splits

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# name -> TrainConfig overrides on top of quality.py's RQ-Reg settings.
VARIANTS = {
    "paper (f_reg reads the logits)": {},
    "f_reg on stopped logits": {"model.regressor_input": "stopped"},
    # Huber's delta in dollars: 2 (the paper) fits about a median, 50 about a mean.
    "paper, delta 50": {"model.delta": 50.0},
    "f_reg on stopped logits, delta 50": {"model.regressor_input": "stopped", "model.delta": 50.0},
    # Early stopping on the classifier's loss instead of f_reg's error.
    "f_reg on stopped logits, delta 50, monitor val_gen": {
        "model.regressor_input": "stopped",
        "model.delta": 50.0,
        "monitor": "val_gen",
    },
}


def _mean(values) -> str:
    values = [v for v in values if v is not None]
    if len(values) > 1:
        return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
    return f"{values[0]:.3f}" if values else "n/a"


def centroid_expectation(run_dir: str, files: list[str]) -> dict:
    """Metrics of sum_l E[c_l] under each level's softmax (its own tokens), the
    prediction the classifier alone makes (level l > 1 conditioned on the
    expected embeddings of the earlier levels, as the decoder runs)."""
    import numpy as np

    from rq_keras.data import make_dataset
    from rq_keras.features import FeatureSpec
    from rq_keras.metrics import evaluate
    from rq_keras.quantization import ResidualQuantizer
    from rq_keras.run_dir import load_model

    model = load_model(os.path.join(run_dir, "model.keras"))
    quantizer = ResidualQuantizer.load(os.path.join(run_dir, "codebook.json"))
    spec = FeatureSpec.load(os.path.join(run_dir, "feature_spec.yaml"))
    labels, predictions = [], []
    for x, y in make_dataset(files, spec, batch_size=4096):
        logits = model(x, training=False)["logits"].numpy().astype(np.float64)
        total = np.zeros(len(logits))
        for level, centroids in enumerate(quantizer.centroids):
            start = quantizer.token_offsets[level]
            own = logits[:, level, start : start + len(centroids)]
            values = np.asarray(centroids, np.float64)
            if quantizer.zero_token:
                own = np.concatenate([logits[:, level, 1:2], own], axis=1)
                values = np.concatenate([[0.0], values])
            own = np.exp(own - own.max(axis=1, keepdims=True))
            total += (own / own.sum(axis=1, keepdims=True)) @ values
        labels.append(y.numpy())
        predictions.append(total)
    return evaluate(np.concatenate(labels), np.concatenate(predictions))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cdnow")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--patience", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--max-train-rows", type=int, default=30_000)
    p.add_argument("--output", default=os.path.join(HERE, "results", "code_learning.md"))
    args = p.parse_args(argv)
    args.evaluate_on, args.set = "validation", []
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="rq_keras_code_learning_") as work:
        data = splits(args.dataset, work, args.max_train_rows)
        for name, extra in VARIANTS.items():
            runs = []
            for seed in seeds:
                config = base_config(data, args, seed, "rq_reg", extra)
                run_dir = os.path.join(work, "runs", f"{len(rows)}-{seed}")
                run = run_one(config, run_dir)
                run["expectation"] = centroid_expectation(run_dir, [data["files"]["validation"]])
                level1 = run["codes"][0]
                print(
                    f"{name} seed {seed}: level-1 NLL {level1['nll']:.3f} (marginal "
                    f"{level1['marginal_nll']:.3f}), acc {level1['accuracy']:.3f} (majority "
                    f"{level1['majority_accuracy']:.3f}), mean ratio {run['mean_ratio']:.3f}, "
                    f"MAE {run['mae']:.2f}, Norm-Gini(+) {run['normalized_gini_positive']:.3f}; "
                    f"centroid expectation: mean ratio {run['expectation']['mean_ratio']:.3f}, "
                    f"MAE {run['expectation']['mae']:.2f}, Norm-Gini(+) "
                    f"{run['expectation']['normalized_gini_positive']:.3f}",
                    flush=True,
                )
                runs.append(run)

            def level(key, index=0, runs=runs):
                return [r["codes"][index][key] for r in runs]

            cells = [
                _mean([a - b for a, b in zip(level("nll"), level("marginal_nll"))]),
                _mean([a - b for a, b in zip(level("accuracy"), level("majority_accuracy"))]),
                _mean([a - b for a, b in zip(level("nll", 1), level("marginal_nll", 1))]),
                _mean(level("other_level_mass")),
                _mean([r["mean_ratio"] for r in runs]),
                _mean([r["mae"] for r in runs]),
                _mean([r["normalized_gini_positive"] for r in runs]),
                _mean([r["spearman_positive"] for r in runs]),
            ]
            epochs = "/".join(str(r["epochs"]) for r in runs)
            rows.append(f"| {name}: f_reg sum (served) | " + " | ".join(cells) + f" | {epochs} |")
            expectation = [r["expectation"] for r in runs]
            cells = ["", "", "", ""] + [
                _mean([e[key] for e in expectation])
                for key in ("mean_ratio", "mae", "normalized_gini_positive", "spearman_positive")
            ]
            rows.append(f"| {name}: sum of centroid expectations | " + " | ".join(cells) + " | |")
    lines = [
        f"Dataset {args.dataset}, validation split, seeds {args.seeds}; width {args.units}, "
        f"batch {args.batch_size}, lr {args.learning_rate}, at most {args.epochs} epochs "
        f"(patience {args.patience}); CPU: {cpu_model()}.",
        "",
        "NLL and accuracy columns are the model's minus the marginal's / the most frequent "
        "code's: below 0 (NLL) and above 0 (accuracy) mean the classifier learned something. "
        "Each variant has two prediction rows: the served prediction (the sum of f_reg's "
        "outputs) and the sum over levels of the centroids' expectation under the level's "
        "softmax (level l > 1 conditioned on the expected embeddings of the earlier levels; "
        "an approximation of E[y|x], computed here in numpy from the logits, not served).",
        "",
        "| variant | L1 NLL - marginal | L1 acc - majority | L2 NLL - marginal | L1 mass on "
        "other levels | mean pred / mean label | MAE | Norm-Gini(+) | Spearman(+) | epochs "
        "run per seed |",
        "|---|" + "---:|" * 9,
        *rows,
    ]
    text = "\n".join(
        ["# Code learning (issue 14)", "", "`python benchmarks/code_learning.py`", "", *lines]
    )
    write_results(args.output, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
