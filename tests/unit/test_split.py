"""The time-based split of a training set: no overlap, nothing lost, both sides usable."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipelines import training_set
from pipelines.errors import DataError
from pipelines.spec import LoadedSpec
from tests.unit.test_train import D0, D1, D2, D3, D4, D5, _frame


def test_split_window_keeps_the_last_eval_days(tiny: LoadedSpec) -> None:
    """Without eval_start the last `eval_days` (1 in the tiny spec) evaluate."""
    assert training_set.split_window(tiny, D1, D4) == training_set.Split(D1, D3, D4)
    assert training_set.split_window(tiny, D1, D4, eval_start=D2) == training_set.Split(D1, D2, D4)


@pytest.mark.parametrize(("start", "end", "eval_start"), [
    (D1, D2, None),  # one-day window, one eval day: nothing left to train on
    (D1, D1, None),  # empty window
    (D1, D4, D1),    # eval_start at the window start: no training days
    (D1, D4, D4),    # eval_start at the window end: no evaluation days
    (D1, D4, D5),    # after the window
    (D1, D4, D0),    # before the window
], ids=["no-train-days", "empty", "at-start", "at-end", "after", "before"])
def test_split_window_rejects_empty_sides(tiny: LoadedSpec, start: dt.date, end: dt.date,
                                          eval_start: dt.date | None) -> None:
    with pytest.raises(DataError, match=r"split: evaluation start .* must fall inside the window"):
        training_set.split_window(tiny, start, end, eval_start)


def test_split_frame_is_time_based_without_overlap(tiny: LoadedSpec) -> None:
    """No eval row is earlier than eval_start, no train row at or after it; nothing lost."""
    frame = _frame()
    boundary = pd.Timestamp(D3, tz="UTC")
    assert (frame["cutoff"] == boundary).any()  # a row exactly on the boundary
    train_rows, eval_rows = training_set.split_frame(frame, tiny, training_set.split_window(tiny, D1, D4))
    assert (train_rows["cutoff"] < boundary).all()
    assert (eval_rows["cutoff"] >= boundary).all()
    assert boundary in set(eval_rows["cutoff"])
    assert len(train_rows) + len(eval_rows) == len(frame)
    assert set(train_rows["reading_id"]).isdisjoint(eval_rows["reading_id"])
    assert len(eval_rows) == 48


def test_split_frame_ignores_row_order(tiny: LoadedSpec) -> None:
    frame = _frame()
    split = training_set.split_window(tiny, D1, D4)
    shuffled = frame.sample(frac=1.0, random_state=3)
    train_a, eval_a = training_set.split_frame(frame, tiny, split)
    train_b, eval_b = training_set.split_frame(shuffled, tiny, split)
    assert set(train_a["reading_id"]) == set(train_b["reading_id"])
    assert set(eval_a["reading_id"]) == set(eval_b["reading_id"])


@pytest.mark.parametrize(("mutate", "side"), [
    (lambda f: f[f["cutoff"] < pd.Timestamp(D3, tz="UTC")], "evaluation"),
    (lambda f: f[f["cutoff"] >= pd.Timestamp(D3, tz="UTC")], "train"),
    (lambda f: f.assign(high=np.where(f["cutoff"] >= pd.Timestamp(D3, tz="UTC"), 1, f["high"])),
     "evaluation"),
    (lambda f: f.assign(high=np.where(f["cutoff"] < pd.Timestamp(D3, tz="UTC"), 0, f["high"])),
     "train"),
], ids=["no-eval-rows", "no-train-rows", "eval-one-class", "train-one-class"])
def test_split_frame_needs_both_classes_on_both_sides(tiny: LoadedSpec, mutate: Any,
                                                      side: str) -> None:
    split = training_set.split_window(tiny, D1, D4)
    with pytest.raises(DataError, match=f"the {side} set of .* has (no rows|rows of one class)"):
        training_set.split_frame(mutate(_frame()), tiny, split)
