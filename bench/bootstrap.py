"""Time the paired bootstrap of metric changes: a per-resample sklearn loop vs bootstrap_deltas.

    make bench-bootstrap                     # = .venv/bin/python bench/bootstrap.py
    .venv/bin/python bench/bootstrap.py --rows 28091 --resamples 100
    .venv/bin/python bench/bootstrap.py --rows 28091,1000000 --loop-resamples 20

Both ways do the same work: draw each resample's row counts from one seeded generator (the
same draws, redrawn the same way), score candidate and champion on it, and take percentile
intervals of the changes. The peer, "per-resample sklearn loop", is how pitstop did it
before `pipelines.metrics.score_resamples`: a Python loop over resamples that calls the
scikit-learn metrics with `sample_weight` (through `metrics.score`, whose plain path is
scikit-learn) for both models. Timed: binary (all 7 metrics) at each `--rows`, then
multiclass (4 classes) and regression at the first `--rows`. At `--scale-above` rows or more
the loop is timed on `--loop-resamples` resamples and scaled linearly to `--resamples`
(printed as scaled). Every line also checks that both ways give the same intervals: on all
resamples, or where the loop was scaled, `bootstrap_deltas` on the loop's resamples.
Synthetic data, seeded; one process; wall and CPU seconds of each call (bootstrap_deltas:
the median of `--reps` runs). See bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import differential, metrics  # noqa: E402

PEER = "per-resample sklearn loop"
CONFIDENCE = 0.95
CLASSES = np.array([0, 1, 2, 3])


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def make_data(task: str, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' predictions from a latent signal each model sees with noise.

    binary: ~20% positive, P(class 1) from a noisy logistic (champion noisier than the
    candidate); multiclass: 4 classes (~50/25/15/10%), softmax of noisy class scores;
    regression: a linear signal plus noise, predictions the signal with model noise.
    """
    rng = np.random.default_rng(seed)
    signal = rng.normal(0, 1, rows)
    if task == "binary":
        y = (rng.random(rows) < _sigmoid(-1.9 + 1.6 * signal)).astype(np.int64)
        return y, *(_sigmoid(-1.9 + 1.6 * signal + rng.normal(0, s, rows)) for s in (0.7, 0.9))
    if task == "multiclass":
        base = np.log([0.5, 0.25, 0.15, 0.1]) + np.outer(signal, [-1.0, 0.0, 0.6, 1.2])
        u = rng.random(rows)[:, None]
        y = CLASSES[(u > np.cumsum(_softmax(base), axis=1)).sum(axis=1).clip(0, 3)]
        return y, *(_softmax(base + rng.normal(0, s, base.shape)) for s in (0.5, 0.8))
    y = 3 * signal + rng.normal(0, 1, rows)
    return y, *(3 * signal + rng.normal(0, s, rows) for s in (1.0, 1.3))


def sklearn_loop(task: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
                 resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    """The peer: one resample at a time, both models scored by scikit-learn with the
    resample's row counts as sample_weight; draws and redraws as `bootstrap_deltas`."""
    extra = {"classes": CLASSES} if task == "multiclass" else {}
    rng = np.random.default_rng(seed)
    rows = len(y)
    classes = len(np.unique(y))
    changes: dict[str, list[float]] = {name: [] for name in metrics.metric_names(task)}
    while len(changes[next(iter(changes))]) < resamples:
        weights = np.bincount(rng.integers(0, rows, rows), minlength=rows)
        if task != "regression" and len(np.unique(y[weights > 0])) < classes:
            continue
        ours = metrics.score(task, y, candidate, weights=weights, **extra)
        theirs = metrics.score(task, y, champion, weights=weights, **extra)
        for name, values in changes.items():
            values.append(ours[name] - theirs[name])
    tail = (1 - CONFIDENCE) / 2 * 100
    return {name: tuple(np.nanpercentile(values, [tail, 100 - tail]))
            for name, values in changes.items()}


def vectorised(task: str, y: np.ndarray, candidate: np.ndarray, champion: np.ndarray,
               resamples: int, seed: int) -> dict[str, tuple[float, float]]:
    extra = {"classes": CLASSES} if task == "multiclass" else {}
    deltas = differential.bootstrap_deltas(task, y, candidate, champion, resamples, seed,
                                           CONFIDENCE, **extra)
    return {name: (d.low, d.high) for name, d in deltas.items()}


def _timed(run, *args) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Wall and CPU seconds of one call, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def _gap(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> float:
    """Largest relative difference of two sets of interval bounds (NaN equal to NaN)."""
    worst = 0.0
    for name in a:
        for x, z in zip(a[name], b[name], strict=True):
            if np.isnan(x) != np.isnan(z):
                return float("inf")
            if not np.isnan(x):
                worst = max(worst, abs(x - z) / max(1.0, abs(z)))
    return worst


def bench_line(task: str, rows: int, args: argparse.Namespace) -> str:
    y, candidate, champion = make_data(task, rows, args.seed)
    scaled = rows >= args.scale_above and args.loop_resamples < args.resamples
    looped = args.loop_resamples if scaled else args.resamples
    loop_wall, loop_cpu, loop_bounds = _timed(sklearn_loop, task, y, candidate, champion,
                                              looped, args.seed)
    runs = [_timed(vectorised, task, y, candidate, champion, args.resamples, args.seed)
            for _ in range(args.reps)]
    fast_wall, fast_cpu, fast_bounds = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    scale = args.resamples / looped
    check = vectorised(task, y, candidate, champion, looped, args.seed) if scaled else fast_bounds
    gap = _gap(loop_bounds, check)
    line = (f"{task:<10} {rows:>9,} {len(loop_bounds):>2} {loop_wall * scale:9.1f} s "
            f"({loop_cpu * scale:7.1f}){'*' if scaled else ' '} {fast_wall:7.2f} s "
            f"({fast_cpu:6.2f})  {loop_wall * scale / fast_wall:6.0f}x "
            f"({loop_cpu * scale / fast_cpu:4.0f}x)  {'agree' if gap <= 1e-9 else 'DIFFER'}: "
            f"bounds within {gap:.0e} on {looped} resamples")
    if scaled:
        line += (f"\n{'':24}* SCALED x{scale:g}: the loop was timed on {looped} resamples "
                 f"({loop_wall:.1f} s, cpu {loop_cpu:.1f})")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="28091,1000000",
                        help="binary row counts, comma-separated; multiclass and regression "
                             "run at the first (default 28091,1000000)")
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--loop-resamples", type=int, default=10,
                        help="resamples the loop is timed on at --scale-above rows or more, "
                             "scaled linearly (default 10)")
    parser.add_argument("--scale-above", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3,
                        help="runs of bootstrap_deltas per line, the median is shown; the "
                             "loop runs once (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(r) for r in args.rows.split(",")]
    import sklearn

    print(f"paired bootstrap, {args.resamples} resamples, candidate and champion, "
          f"{CONFIDENCE:.0%} intervals; python {platform.python_version()}, numpy "
          f"{np.__version__}, scikit-learn {sklearn.__version__}, {os.cpu_count()} cpus, "
          "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    print(f"wall seconds (cpu seconds); m = metrics; loop: one run of the {PEER!r}; "
          f"vectorised: bootstrap_deltas, median of {args.reps} runs")
    print(f"{'task':<10} {'rows':>9} {'m':>2} {'loop':>21} {'vectorised':>20}  "
          f"{'loop/vectorised':<15}  check")
    lines = [("binary", rows) for rows in sizes]
    lines += [("multiclass", sizes[0]), ("regression", sizes[0])]
    for task, rows in lines:
        print(bench_line(task, rows, args), flush=True)


if __name__ == "__main__":
    main()
