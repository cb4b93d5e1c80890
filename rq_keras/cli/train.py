"""`python train.py`: flags -> `TrainConfig` -> `rq_keras.training.train`.

Exit status: 0 done; 1 the loss became NaN (the message names epoch and
step); 2 a bad flag, config or input file, an output directory that is not a
run's (not empty and no `rq_keras_run.json`), a damaged file of an unfinished
run (each named on stderr, before anything in the output directory is
removed), or a file that cannot be written (a full disk, a read-only folder;
the message names it and the cause); 3 the output directory holds a finished
run (use `--overwrite`) or an unfinished run of another config; 4 another
process writes into the output directory (the message names it: host, PID,
start), or a lock file left there by another host (the message says how to
clear it); 75 stopped by SIGTERM (preemption), the state saved at the step:
the same command resumes there (`rq_keras.training.preemption`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence

import yaml

__all__ = ["build_train_parser", "format_metrics", "parse_key_value", "train_main"]


# Flag -> TrainConfig key, for the flags that set one key each.
_FLAGS = {
    "dataset": "dataset",
    "raw_dir": "raw_dir",
    "train": "train_files",
    "validation": "validation_files",
    "test": "test_files",
    "feature_spec": "feature_spec",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "optimizer": "optimizer",
    "steps_per_epoch": "steps_per_epoch",
    "monitor": "monitor",
    "patience": "patience",
    "strategy": "strategy",
    "devices": "devices",
    "cpu_devices": "cpu_devices",
    "on_bad_rows": "on_bad_rows",
    "head": "head",
}


def parse_key_value(text: str) -> tuple[str, object]:
    """`KEY=VALUE` -> `(key, YAML value)`, as `--set` takes it."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"{key}: the value is not YAML: {err}") from None


def _batch_size(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or auto, got {text!r}") from None


def build_train_parser() -> argparse.ArgumentParser:
    from rq_keras.config.configs import HEAD_CHOICES, MONITORS, OPTIMIZERS, STRATEGIES
    from rq_keras.datasets import DATASETS

    p = argparse.ArgumentParser(
        prog="python train.py",
        description=(
            "Train an RQ-Reg model: fit the codebook on the training labels, adapt the "
            "features, train, evaluate on the test split; outputs in --output-dir."
        ),
    )
    data = p.add_argument_group("data (a registered dataset, or your files)")
    data.add_argument("--dataset", choices=sorted(DATASETS), help="build this dataset's splits")
    data.add_argument("--raw-dir", help="the dataset's raw files (cdnow: bundled)")
    data.add_argument("--train", nargs="+", metavar="FILE", help="training files")
    data.add_argument("--validation", nargs="+", metavar="FILE", help="validation files")
    data.add_argument("--test", nargs="+", metavar="FILE", help="test files")
    data.add_argument("--feature-spec", metavar="YAML", help="the files' feature spec")
    data.add_argument("--on-bad-rows", choices=("fail", "skip"))
    p.add_argument("--output-dir", required=True, help="where the run's outputs go")
    p.add_argument("--config", metavar="YAML", help="TrainConfig keys; flags override them")
    p.add_argument(
        "--head",
        choices=HEAD_CHOICES,
        help="rq_reg (default: the paper's model), kmeans (RQ-Reg with one level), or a "
        "baseline head on the same features and encoder: mse, log_mse, huber, ziln",
    )
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        help="global batch size, or auto (default: at least 64 steps an epoch, at most 1024)",
    )
    p.add_argument("--learning-rate", type=float)
    p.add_argument(
        "--optimizer",
        choices=OPTIMIZERS,
        help="lazy_adam (default: embedding rows updated only when a batch holds them) or adam",
    )
    p.add_argument("--steps-per-epoch", type=int)
    p.add_argument("--monitor", choices=MONITORS, help="early-stopping metric")
    p.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    p.add_argument("--strategy", choices=STRATEGIES)
    p.add_argument("--devices", nargs="+", help="devices for mirrored / one_device")
    p.add_argument(
        "--cpu-devices",
        type=int,
        metavar="N",
        help="split the CPU into N logical devices /cpu:0../cpu:N-1 (a local mirrored run "
        "without GPUs)",
    )
    p.add_argument("--seed", type=int, help="sets the run's, the model's and the codebook's seed")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        type=parse_key_value,
        metavar="KEY=VALUE",
        help="any config key, dotted for sections: --set model.units=128 --set "
        "quantizer.num_levels=2 (values are YAML)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a finished run")
    p.add_argument(
        "--verbose",
        choices=("auto", "0", "1", "2"),
        default="auto",
        help="Keras progress output (auto: bars on a terminal, a line per epoch otherwise)",
    )
    return p


def format_metrics(metrics: dict) -> str:
    """The test metrics as an aligned two-column table."""
    test = metrics.get("test") or {}
    names = [
        ("rows", "test rows"),
        ("positive_rows", "rows with y > 0"),
        ("mae", "MAE"),
        ("xauc", "XAUC (Eq. 18)"),
        ("xauc_tie_aware", "XAUC, tie-aware"),
        ("normalized_gini", "Norm-Gini"),
        ("spearman", "Spearman"),
        ("normalized_gini_positive", "Norm-Gini(+)"),
        ("spearman_positive", "Spearman(+)"),
    ]
    lines = []
    for key, label in names:
        if key not in test:
            continue
        value = test[key]
        text = (
            "n/a" if value is None else (f"{value:,}" if key.endswith("rows") else f"{value:.4f}")
        )
        note = _NOTES.get(key, "")
        lines.append(f"  {label:<17} {text:>12}{note}".rstrip())
    if "mean_prediction" in test:
        lines.append(
            f"  {'total value':<17} mean prediction {test['mean_prediction']:,.4g} vs mean "
            f"label {test['mean_label']:,.4g} ({_off(test.get('mean_ratio'))})"
        )
    for name, trivial in (test.get("trivial") or {}).items():
        lines.append(
            f"  {'constant ' + name.replace('train_', 'train '):<17} {trivial['value']:,.4g}: "
            f"MAE {trivial['mae']:.4f} (a constant ranks no one: Norm-Gini 0, tie-aware XAUC 0.5)"
        )
    if "by_prediction" in test:
        lines.append(f"  {'prediction':<17} {test['prediction_type']} (every type, same rows:)")
        for kind, scores in test["by_prediction"].items():
            lines.append(
                f"  {'  ' + kind:<17} MAE {scores['mae']:.4f}, Norm-Gini(+) "
                f"{_fmt(scores['normalized_gini_positive'])}, Spearman(+) "
                f"{_fmt(scores['spearman_positive'])}, total {_off(scores.get('mean_ratio'))}"
            )
        if "positive_mean" in test["by_prediction"]:
            lines.append(
                f"  {'':<17} (positive_mean is E[y | y > 0]: it ranks the rows with y > 0, "
                "its total is not a budget)"
            )
    distribution = test.get("distribution") or {}
    if "interval" in distribution:
        interval = distribution["interval"]
        lines.append(
            f"  {'interval':<17} [q{interval['low']:g}, q{interval['high']:g}] holds "
            f"{interval['coverage']:.1%} of the labels (nominal {interval['nominal']:.0%})"
        )
    for t, entry in (distribution.get("exceedance") or {}).items():
        lines.append(
            f"  {'P(y > ' + t + ')':<17} mean {entry['mean_predicted']:.3f} vs observed "
            f"{entry['observed']:.3f}; Brier {entry['brier']:.4f} (base rate "
            f"{entry['brier_base_rate']:.4f})"
        )
    for level in test.get("codes") or []:
        lines.append(
            f"  code level {level['level']:<6} NLL {level['nll']:.3f} (marginal "
            f"{level['marginal_nll']:.3f}), accuracy {level['accuracy']:.3f} (most frequent "
            f"code {level['majority_accuracy']:.3f}), other levels' mass "
            f"{level['other_level_mass']:.3f}"
        )
    return "\n".join(lines)


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _off(ratio) -> str:
    """Mean prediction over mean label as a signed percentage off (`-2.3%`)."""
    return "n/a" if ratio is None else f"{100 * (ratio - 1):+.1f}%"


# Read beside the value: what a number alone would mislead about.
_NOTES = {
    "xauc": "  (Eq. 18: a pair tied in label or prediction counts as wrong, so with many "
    "zero labels a good model can score < 0.5)",
    "xauc_tie_aware": "  (ties count 1/2: a constant scores 0.5)",
}


def _op_errors() -> type:
    """`tf.errors.OpError` (TensorFlow is loaded by then)."""
    import tensorflow as tf

    return tf.errors.OpError


def _first_line(message: str) -> str:
    """An op error's message without TensorFlow's node and op tags:
    `{{function_node ...}} PATH; No space left on device [Op:SaveV2]` ->
    `PATH; No space left on device`."""
    lines = [line.strip() for line in str(message).strip().splitlines() if line.strip()]
    line = lines[0] if lines else "TensorFlow failed with no message"
    line = re.sub(r"^\{\{[^}]*\}\}\s*", "", line)
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", line)


def train_main(argv: Sequence[str] | None = None) -> int:
    parser = build_train_parser()
    args = parser.parse_args(argv)
    from rq_keras.atomic import DirectoryInUseError
    from rq_keras.config.configs import SEEDED_KEYS, load_config
    from rq_keras.training.callbacks import NonFiniteLossError
    from rq_keras.training.preemption import PREEMPTED_EXIT, PreemptionGuard, TrainingPreempted
    from rq_keras.training.run import train
    from rq_keras.training.state import RunExistsError

    overrides = {}
    for flag, key in _FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = list(value) if isinstance(value, list) else value
    if args.seed is not None:
        overrides.update(dict.fromkeys(SEEDED_KEYS, args.seed))
    overrides.update(dict(args.set))
    try:
        config = load_config(args.config, overrides)
        with PreemptionGuard() as guard:
            result = train(
                config,
                args.output_dir,
                overwrite=args.overwrite,
                verbose=args.verbose if args.verbose == "auto" else int(args.verbose),
                preemption=guard,
            )
    except TrainingPreempted as err:
        print(f"train.py: {err}", file=sys.stderr)
        return PREEMPTED_EXIT
    except RunExistsError as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 3
    except DirectoryInUseError as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 4
    except NonFiniteLossError as err:
        print(f"train.py: {err}", file=sys.stderr)
        return 1
    except _op_errors() as err:
        # TensorFlow's own failures reach here as op errors: a checkpoint on a
        # full disk or in a read-only folder (the message names the file and
        # the cause), a bad label inside a TFRecord pipeline.
        print(f"train.py: error: {_first_line(err.message)}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        from rq_keras.data.reports import MalformedDataError

        if isinstance(err, MalformedDataError) and err.row is not None:
            print(
                "train.py: to drop such rows instead (counted in data_report.json), pass "
                "--on-bad-rows skip",
                file=sys.stderr,
            )
        return 2
    if result.model is None:  # a non-chief worker
        print(json.dumps({"chief": False, "weights_digest": result.weights_digest}))
        return 0
    metrics = result.metrics
    print(f"\nrun: {result.output_dir}  (epochs {result.epochs_run}, best {result.best_epoch})")
    if metrics.get("test"):
        print("test metrics:")
        print(format_metrics(metrics))
    for name, path in result.plots.items():
        print(f"plot {name}: {path}")
    summary = {
        "chief": True,
        "output_dir": result.output_dir,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "resumed": result.resumed,
        "weights_digest": result.weights_digest,
        "test": {k: v for k, v in (metrics.get("test") or {}).items() if k != "decile_calibration"},
    }
    print(json.dumps(summary))
    return 0
