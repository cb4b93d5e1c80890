"""Benchmark: RQ K-means fit + encode against per-level Lloyd K-means.

    python benchmarks/quantizer.py            # or: make bench-quantizer

For long-tailed targets (lognormal, and zero-inflated lognormal) of 200k, 1M
and 12.5M values (12.5M is the size of KuaiRec's big matrix), L=3, K=48:

* rq_keras `ResidualQuantizer` (default: exact 1-D dynamic-programme start +
  Lloyd, K-means at every level): fit and encode seconds (median of
  `--repeats` runs), peak resident memory of the process, reconstruction MAE;
  plus the MAE of the K-means, K-means, K-medians variant;
* the baseline: scikit-learn `KMeans(n_clusters=48, init="k-means++",
  n_init=1, max_iter=300, tol=1e-4)` per level on the raw residuals (plain
  per-level Lloyd from one k-means++ start), same data, same run; one run per
  size (it is the slow side), on sizes up to `--baseline-max-n`.

Each measurement runs in a fresh child process so peak memory is its own.
Prints a Markdown table and writes it to `benchmarks/results/quantizer.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
LEVELS, K = 3, 48
DISTRIBUTIONS = ("lognormal", "zi_lognormal")


def make_labels(dist: str, n: int, seed: int = 0) -> np.ndarray:
    """Long-tailed labels: lognormal(2, 1.5), optionally 40% exact zeros."""
    rng = np.random.default_rng(seed)
    y = rng.lognormal(2.0, 1.5, n)
    if dist == "zi_lognormal":
        y[rng.random(n) < 0.4] = 0.0
    return y


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child_rq(dist: str, n: int, repeats: int) -> dict:
    sys.path.insert(0, REPO)
    from rq_keras.quantizer.residual import ResidualQuantizer

    y = make_labels(dist, n)
    data_mib = rss_peak_mib()
    fits, encodes = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        q = ResidualQuantizer(num_levels=LEVELS, codebook_size=K).fit(y)
        mid = time.perf_counter()
        codes = q.encode(y)
        end = time.perf_counter()
        fits.append(mid - start)
        encodes.append(end - mid)
    peak = rss_peak_mib()
    mae = float(np.mean(np.abs(y - q.decode(codes))))
    variant = ResidualQuantizer(LEVELS, K, method=["kmeans", "kmeans", "kmedians"]).fit(y)
    mae_variant = float(np.mean(np.abs(y - variant.decode(variant.encode(y)))))
    return {
        "fit_s": statistics.median(fits),
        "encode_s": statistics.median(encodes),
        "total_s": statistics.median(f + e for f, e in zip(fits, encodes)),
        "runs": repeats,
        "peak_rss_mib": peak,
        "data_rss_mib": data_mib,
        "mae": mae,
        "level1_sse": q.fit_info["levels"][0]["cost"],
        "mae_kmedians_last": mae_variant,
    }


def child_baseline(dist: str, n: int) -> dict:
    from sklearn.cluster import KMeans

    y = make_labels(dist, n)
    start = time.perf_counter()
    residual = y.copy()
    recon = np.zeros_like(y)
    iters, level1_sse = [], None
    for level in range(LEVELS):
        km = KMeans(
            n_clusters=K, init="k-means++", n_init=1, max_iter=300, tol=1e-4, random_state=level
        ).fit(residual[:, None])
        value = km.cluster_centers_[km.labels_, 0]
        recon += value
        residual -= value
        iters.append(int(km.n_iter_))
        if level == 0:
            level1_sse = float(km.inertia_)
    seconds = time.perf_counter() - start
    mae = float(np.mean(np.abs(y - recon)))
    return {"total_s": seconds, "mae": mae, "iters": iters, "level1_sse": level1_sse}


def run_child(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="200000,1000000,12500000")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--baseline-max-n", type=int, default=12_500_000)
    p.add_argument("--output", default=os.path.join(HERE, "results", "quantizer.md"))
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, dist, n = args.child[0], args.child[1], int(args.child[2])
        out = child_rq(dist, n, args.repeats) if kind == "rq" else child_baseline(dist, n)
        print(json.dumps(out))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for dist in DISTRIBUTIONS:
        for n in sizes:
            rq = run_child("rq", dist, str(n), "--repeats", str(args.repeats))
            base = run_child("baseline", dist, str(n)) if n <= args.baseline_max_n else None
            rows.append((dist, n, rq, base))
            msg = f"{dist} n={n}: rq {rq['total_s']:.2f}s mae {rq['mae']:.3g}"
            if base:
                msg += f" | baseline {base['total_s']:.1f}s mae {base['mae']:.3g}"
            print(msg, flush=True)

    import numpy
    import sklearn

    lines = [
        "# Quantizer benchmark",
        "",
        "Command: `python benchmarks/quantizer.py` (`make bench-quantizer`), "
        f"{args.repeats} timed runs of rq_keras per row (median), one baseline run per row.",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {numpy.__version__}, scikit-learn {sklearn.__version__}.",
        "",
        f"L={LEVELS}, K={K}. Labels: lognormal(mu=2, sigma=1.5), seed 0; `zi_lognormal` "
        "sets 40% of them to exactly 0. MAE is the mean |y - sum_l q_l| on the same "
        "values the codebook was fitted on. Peak RSS is the whole child process, "
        "the label array included (its size after generating the labels in brackets).",
        "",
        "| labels | n | rq fit s | rq encode s | rq fit+encode s | peak RSS MiB "
        "| rq MAE | rq MAE, K-medians last | baseline s | baseline MAE "
        "| speed-up | MAE ratio rq/baseline | level-1 SSE ratio rq/baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dist, n, rq, base in rows:
        b_s = f"{base['total_s']:.2f}" if base else "not run"
        b_mae = f"{base['mae']:.4g}" if base else "not run"
        speed = f"{base['total_s'] / rq['total_s']:.0f}x" if base else "-"
        ratio = f"{rq['mae'] / base['mae']:.2f}" if base else "-"
        sse = f"{rq['level1_sse'] / base['level1_sse']:.3f}" if base else "-"
        lines.append(
            f"| {dist} | {n:,} | {rq['fit_s']:.2f} | {rq['encode_s']:.2f} | "
            f"{rq['total_s']:.2f} | {rq['peak_rss_mib']:.0f} ({rq['data_rss_mib']:.0f}) | "
            f"{rq['mae']:.4g} | {rq['mae_kmedians_last']:.4g} | {b_s} | {b_mae} | "
            f"{speed} | {ratio} | {sse} |"
        )
    text = "\n".join(lines) + "\n"
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
