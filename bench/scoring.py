"""Scoring throughput: pitstop's batch scoring of a day against the raw predict call.

    make bench-score                 # = .venv/bin/python bench/scoring.py
    .venv/bin/python bench/scoring.py --start 2013-12-01 --days 7 --reps 3

Timed, per day, in one process and alternating:
- **pitstop**: what `scoring.score_day` does before it records anything: the day's spine
  from the label function, every view as-of joined at each row's prediction time through the
  training set's own join (feature partitions re-hashed as they are read), and the
  predictions with their decisions (`scoring.scoring_rows` + `scoring.predictions`);
- **raw predict** (the peer): the champion's `predict_proba` (or `predict`) on the same rows,
  already joined and in memory.

The ratio (pitstop / raw) is what the point-in-time feature path costs over the model's own
compute. Rows per second of both are printed. Publishing, monitoring and MLflow logging are
not timed (they do not grow with the model).

Needs a home where the flights example's champion was registered with a monitoring
reference (`make run` does that): `PITSTOP_HOME` (default ./.pitstop). Wall seconds, median
of `--reps`; see bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipelines import lake, registry, scoring, train  # noqa: E402
from pipelines.spec import load_spec  # noqa: E402

PEER = "the champion's raw predict call on the same rows"
SPEC = Path(__file__).resolve().parent.parent / "dags" / "flights_delay.yaml"


def _median_seconds(run, reps: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(reps):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2013, 12, 1))
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("PITSTOP_HOME", str(Path(".pitstop").resolve()))
    os.environ.setdefault("MLFLOW_TRACKING_URI",
                          f"sqlite:///{Path(os.environ['PITSTOP_HOME']) / 'mlflow.db'}")
    spec, store = load_spec(args.spec), lake.from_env()
    pinned = scoring.pin_model(spec)
    model = registry.load_model(pinned.model_uri)
    print(f"scoring {spec.name} v{pinned.version} per day, pitstop vs {PEER!r}; wall seconds, "
          f"median of {args.reps}")
    print(f"{'day':<11} {'rows':>6} {'pitstop s':>10} {'raw s':>8} {'pitstop rows/s':>15} "
          f"{'raw rows/s':>11}  ratio")
    totals = [0, 0.0, 0.0]
    for day in lake.days(args.start, args.start + dt.timedelta(days=args.days)):
        frame, _ = scoring.scoring_rows(store, spec, day)
        ours = _median_seconds(lambda day=day: scoring.predictions(
            spec, model, scoring.scoring_rows(store, spec, day)[0]), args.reps)
        raw = _median_seconds(lambda frame=frame: train.predict(model, frame), args.reps)
        rows = len(frame)
        totals = [totals[0] + rows, totals[1] + ours, totals[2] + raw]
        print(f"{day}  {rows:>6} {ours:>10.3f} {raw:>8.3f} {rows / ours:>15,.0f} "
              f"{rows / raw:>11,.0f}  {ours / raw:.1f}x", flush=True)
    rows, ours, raw = totals
    print(f"{'all days':<11} {rows:>6} {ours:>10.3f} {raw:>8.3f} {rows / ours:>15,.0f} "
          f"{rows / raw:>11,.0f}  {ours / raw:.1f}x")


if __name__ == "__main__":
    main()
