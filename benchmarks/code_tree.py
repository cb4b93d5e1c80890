"""How exact, and how costly, is the served code-tree distribution?

    python benchmarks/code_tree.py [--run out/demo/cdnow] [--rows 512]

Takes a finished RQ-Reg run (default: the one `make demo` writes) and scores
the first `--rows` rows of its VALIDATION split with the code tree at
`exact_levels` 0 (the default: one pass), 1 (level 1 expanded; with L = 3
also with level 3 stepped on every branch, `code_tree(deeper="branch")`, beside
the served read of the pass) and L - 1 (exact): the mean's distance to the
exact mean, MAE / Norm-Gini(+) / Spearman(+) / total value of each mean, the
[p10, p90] coverage, P(y > 0)'s largest difference, and the seconds each
takes (eager, batches of 128).
Writes `benchmarks/results/code_tree.md`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from _machine import cpu_model, write_results

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _label(setting, exact) -> str:
    levels, read = setting
    if setting == exact:
        return f"{levels} (exact)"
    return f"{levels} (level 3 per branch)" if read == "branch" else str(levels)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default=os.path.join(REPO, "out", "demo", "cdnow"))
    p.add_argument("--rows", type=int, default=512)
    p.add_argument("--output", default=os.path.join(HERE, "results", "code_tree.md"))
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, REPO)
    import numpy as np

    from rq_keras.data import make_dataset
    from rq_keras.evaluation.distribution_metrics import distribution_report
    from rq_keras.evaluation.metrics import evaluate
    from rq_keras.features import FeatureSpec
    from rq_keras.training.run_dir import load_model

    model = load_model(os.path.join(args.run, "model.keras"))
    spec = FeatureSpec.load(os.path.join(args.run, "feature_spec.yaml"))
    decoder = model.decoder
    exact = max(1, decoder.num_levels - 1)
    # (exact_levels, how the levels below the atoms are read): with 1 of 3,
    # level 3 from the pass (served) or stepped on every branch.
    settings = sorted({(0, "pass"), (1, "pass"), (exact, "pass")})
    if exact >= 2:
        settings.insert(2, (1, "branch"))
    exact = (exact, "pass")
    parts = {k: {"mean": [], "quantiles": [], "p0": []} for k in settings}
    seconds = dict.fromkeys(settings, 0.0)
    labels = []
    validation = os.path.join(args.run, "data", "validation.parquet")
    for x, y in make_dataset([validation], spec, batch_size=128).take(args.rows // 128):
        state = model.encoder(model.features(x, training=False), training=False)
        for k in settings:
            start = time.perf_counter()
            out = decoder.code_tree(state, exact_levels=k[0], deeper=k[1])
            seconds[k] += time.perf_counter() - start
            parts[k]["mean"].append(out["mean"].numpy())
            parts[k]["quantiles"].append(out["quantiles"].numpy())
            parts[k]["p0"].append(out["exceedance"].numpy()[:, 0])
        labels.append(y.numpy())
    y = np.concatenate(labels).astype(np.float64)
    done = {
        k: {key: np.concatenate(v).astype(np.float64) for key, v in d.items()}
        for k, d in parts.items()
    }
    rows = []
    for k in settings:
        mean = done[k]["mean"]
        diff = np.abs(mean - done[exact]["mean"])
        scores = evaluate(y, mean)
        interval = distribution_report(y, done[k]["quantiles"], decoder.quantiles)["interval"]
        p0 = float(np.max(np.abs(done[k]["p0"] - done[exact]["p0"])))
        rows.append(
            f"| {_label(k, exact)} | {diff.mean():.4f} | {diff.max():.4f} | "
            f"{scores['mae']:.3f} | {scores['normalized_gini_positive']:.4f} | "
            f"{scores['spearman_positive']:.4f} | {scores['mean_ratio']:.4f} | "
            f"{interval['coverage']:.4f} | {p0:.2g} | {seconds[k]:.2f} |"
        )
    text = "\n".join(
        [
            "# The code tree: exactness and cost",
            "",
            f"`python benchmarks/code_tree.py --run {os.path.relpath(args.run, REPO)} "
            f"--rows {args.rows}`; CPU: {cpu_model()}.",
            "",
            f"Model: `{os.path.relpath(args.run, REPO)}` (L = {decoder.num_levels}, K = "
            f"{list(decoder.codebook_sizes)}, LSTM {decoder.units}); its first {y.size} validation "
            f"rows, mean label {y.mean():.2f}. Mean error: the mean's absolute distance to the "
            "exact mean. Seconds: the code tree alone, eager, batches of 128.",
            "",
            "| exact_levels | mean error, mean abs | max abs | MAE | Norm-Gini(+) | "
            "Spearman(+) | mean pred / mean label | [p10, p90] coverage | P(y>0) max diff | "
            "seconds |",
            "|---|" + "---:|" * 9,
            *rows,
        ]
    )
    write_results(args.output, text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
