"""The point-in-time join against a brute-force reference, a leakage property, and its errors.

The reference below is deliberately naive (a loop over every spine row and every feature row)
so that it is obviously the contract: candidates share the keys (null keys never match), have
`feature_time <= spine_time`, are younger than the TTL, and, with `known_at_time`, were
created by the spine time; the winner has the greatest (feature_time, created_time).
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from pipelines.errors import DataError
from pipelines.pit import point_in_time_join

T0 = pd.Timestamp("2024-03-01T00:00Z")
KEYS = ["k1", "k2"]


def minutes(n: int) -> pd.Timestamp:
    return T0 + pd.Timedelta(minutes=n)


def value_of(k1: Any, k2: Any, ft: pd.Timestamp, ct: pd.Timestamp) -> float | None:
    """A value fixed by keys and both times, so generated tables never hold conflicting ties;
    about one in seven is null, so a null correction must win like any other value.

    A digest of the repr, not `hash()`: string hashes change with PYTHONHASHSEED, so a
    failing example would not replay in another process. `k2` (never null) may come back
    from a frame as a NumPy integer, whose repr differs from an int's; it is made an int.
    """
    key = (k1, int(k2), ft.value, ct.value)
    code = zlib.crc32(repr(key).encode()) % 10_000
    return None if code % 7 == 0 else float(code)


def test_generated_values_replay_in_any_process() -> None:
    """Hypothesis replays a failure from its database in a new process: the values it
    generated then must be the ones it generated when the test failed. The probe runs this
    module's `value_of` alone (times as objects with `.value`), so it starts in milliseconds."""
    probe = "\n".join([
        "from __future__ import annotations", "import zlib",
        "from types import SimpleNamespace as At", inspect.getsource(value_of),
        "print([value_of(k1, k2, At(value=t), At(value=t + 2))"
        " for k1 in ('a', 'b', None) for k2 in (1, 2) for t in range(5)])"])
    seen = {subprocess.run([sys.executable, "-c", probe], check=True, text=True,
                           capture_output=True, env={**os.environ, "PYTHONHASHSEED": seed}
                           ).stdout for seed in ("1", "2")}
    assert len(seen) == 1
    assert "None" in seen.pop()  # nulls among the values, as the join tests need


def reference(spine: pd.DataFrame, features: pd.DataFrame, ttl: dt.timedelta | None,
              known_at_time: bool, with_created: bool) -> list[float | None]:
    out: list[float | None] = []
    for s in spine.itertuples(index=False):
        best = None
        for f in features.itertuples(index=False):
            if s.k1 is None or s.k2 is None or f.k1 is None or f.k2 is None:
                continue
            if (s.k1, s.k2) != (f.k1, f.k2) or not f.ft <= s.t:
                continue
            if ttl is not None and f.ft < s.t - ttl:
                continue
            if with_created and known_at_time and f.ct > s.t:
                continue
            rank = (f.ft, f.ct if with_created else f.ft)
            if best is None or rank > best[0]:
                best = (rank, None if pd.isna(f.v) else f.v)
        out.append(None if best is None else best[1])
    return out


key1 = st.sampled_from(["a", "b", None])
key2 = st.sampled_from([1, 2])


@st.composite
def tables(draw: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    spine_rows = draw(st.lists(st.tuples(key1, key2, st.integers(0, 30)), max_size=25))
    feature_rows = []
    for k1, k2, ft, lag in draw(st.lists(
            st.tuples(key1, key2, st.integers(0, 30), st.integers(-3, 12)), max_size=30)):
        row = (k1, k2, minutes(ft), minutes(ft + lag))
        feature_rows.append((*row, value_of(*row)))
    duplicates = draw(st.lists(st.sampled_from(feature_rows), max_size=5)) if feature_rows else []
    spine = pd.DataFrame(
        [(k1, k2, minutes(t), i) for i, (k1, k2, t) in enumerate(spine_rows)],
        columns=["k1", "k2", "t", "row"])
    spine = pd.concat([spine, spine.head(draw(st.integers(0, 3)))], ignore_index=True)
    features = pd.DataFrame(feature_rows + duplicates, columns=["k1", "k2", "ft", "ct", "v"])
    for frame, columns in ((spine, ["t"]), (features, ["ft", "ct"])):
        for column in columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
        frame["k2"] = frame["k2"].astype("Int64")
    features["v"] = features["v"].astype("float64")
    return spine, features


def as_python(frame: pd.DataFrame) -> pd.DataFrame:
    """Null keys as None so the reference compares them plainly."""
    result = frame.astype({"k1": "object", "k2": "object"})
    return result.where(result.notna(), None)


def assert_values(actual: pd.Series, expected: list[float | None]) -> None:
    got = [None if v is None or (isinstance(v, float) and math.isnan(v)) else v
           for v in actual.tolist()]
    assert got == expected


ttls = st.sampled_from([None, dt.timedelta(0), dt.timedelta(minutes=4),
                        dt.timedelta(minutes=10)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), ttls, st.booleans(), st.booleans())
def test_matches_the_reference(data: tuple[pd.DataFrame, pd.DataFrame],
                               ttl: dt.timedelta | None, known_at_time: bool,
                               with_created: bool) -> None:
    spine, features = data
    if not with_created:
        features = features[features["ft"] == features["ct"]]  # one row per key and time
    out = point_in_time_join(spine, features.drop(columns=[] if with_created else ["ct"]),
                             keys=KEYS, spine_time="t", feature_time="ft",
                             created_time="ct" if with_created else None, ttl=ttl,
                             known_at_time=known_at_time)
    assert len(out) == len(spine)
    assert out["row"].tolist() == spine["row"].tolist()  # spine order, duplicates kept
    assert list(out.columns) == ["k1", "k2", "t", "row", "v"]
    assert_values(out["v"], reference(as_python(spine), as_python(features), ttl,
                                      known_at_time, with_created))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), ttls, st.data())
def test_later_information_never_changes_a_row(data: tuple[pd.DataFrame, pd.DataFrame],
                                               ttl: dt.timedelta | None,
                                               draw: st.DataObject) -> None:
    """Add or rewrite feature rows that were not known at a spine row's time: that row
    must not change (feature_time later, or created later with known_at_time)."""
    spine, features = data
    if spine.empty:
        return
    target = draw.draw(st.integers(0, len(spine) - 1))
    t = spine["t"].iloc[target]
    k1, k2 = spine["k1"].iloc[target], spine["k2"].iloc[target]
    unknown = []
    for offset, late_created in draw.draw(st.lists(
            st.tuples(st.integers(-10, 10), st.integers(1, 10)), min_size=1, max_size=6)):
        ft = t + pd.Timedelta(minutes=offset)
        # known only after t: an event after t, or an event before t written after t
        ct = max(ft, t + pd.Timedelta(minutes=late_created))
        unknown.append((k1, k2, ft, ct, -(value_of(k1, k2, ft, ct) or 0.5)))
    later = pd.DataFrame(unknown, columns=features.columns).astype(features.dtypes.to_dict())
    # a new row on an existing (keys, ft, ct) would be a conflicting tie, which is an error,
    # not a change of the row
    taken = set(as_python(features)[["k1", "k2", "ft", "ct"]].itertuples(index=False))
    later = later[[row not in taken for row in
                   as_python(later)[["k1", "k2", "ft", "ct"]].itertuples(index=False)]]
    rewritten = features.copy()
    after_t = rewritten["ft"] > t
    rewritten.loc[after_t, "v"] = rewritten.loc[after_t, "v"] + 0.5  # rewrite the future
    kwargs = {"keys": KEYS, "spine_time": "t", "feature_time": "ft", "created_time": "ct",
              "ttl": ttl}
    before = point_in_time_join(spine, features, **kwargs)
    after = point_in_time_join(spine, pd.concat([rewritten, later], ignore_index=True),
                               **kwargs)
    pd.testing.assert_series_equal(before.iloc[target], after.iloc[target])


def test_the_leakage_property_can_fail() -> None:
    """Without known_at_time a correction written after the spine time leaks into the row:
    exactly what the property above would catch if the default let it through."""
    spine = pd.DataFrame({"k": ["a"], "t": [minutes(10)]})
    known = pd.DataFrame({"k": ["a"], "ft": [minutes(5)], "ct": [minutes(5)], "v": [1.0]})
    late = pd.DataFrame({"k": ["a"], "ft": [minutes(5)], "ct": [minutes(20)], "v": [2.0]})
    both = pd.concat([known, late], ignore_index=True)
    kwargs = {"keys": ["k"], "spine_time": "t", "feature_time": "ft", "created_time": "ct"}
    assert point_in_time_join(spine, both, **kwargs)["v"].tolist() == [1.0]
    assert point_in_time_join(spine, both, known_at_time=False, **kwargs)["v"].tolist() == [2.0]


def _example() -> tuple[pd.DataFrame, pd.DataFrame]:
    spine = pd.DataFrame({"k": ["a", "b", "a", None, "c"],
                          "t": [minutes(10), minutes(10), minutes(3), minutes(10), minutes(10)]})
    features = pd.DataFrame({
        "k": ["a", "a", "a", "b", "b"],
        "ft": [minutes(2), minutes(8), minutes(8), minutes(10), minutes(11)],
        "ct": [minutes(2), minutes(9), minutes(12), minutes(10), minutes(11)],
        "v": [1.0, 2.0, 3.0, 4.0, 5.0]})
    return spine, features


EXPECTED = [2.0, 4.0, 1.0, None, None]  # a@10 sees (8, created 9), not the 12 correction


@pytest.mark.parametrize("kind", ["pandas", "arrow", "file", "folder", "glob"])
def test_every_input_kind_gives_the_same_rows(kind: str, tmp_path: Path) -> None:
    spine, features = _example()
    if kind == "pandas":
        inputs: tuple[Any, Any] = (spine, features)
    elif kind == "arrow":
        inputs = (pa.Table.from_pandas(spine), pa.Table.from_pandas(features))
    else:
        folder = tmp_path / "spine"
        folder.mkdir()
        # two files: the spine's order is the files' order, then the rows' order
        pq.write_table(pa.Table.from_pandas(spine.iloc[:2], preserve_index=False),
                       folder / "part-0.parquet")
        pq.write_table(pa.Table.from_pandas(spine.iloc[2:], preserve_index=False),
                       folder / "part-1.parquet")
        pq.write_table(pa.Table.from_pandas(features, preserve_index=False),
                       tmp_path / "features.parquet")
        spine_ref = {"file": folder / "part-0.parquet", "folder": folder,
                     "glob": str(folder / "*.parquet")}[kind]
        inputs = (spine_ref, tmp_path / "features.parquet")
    out = point_in_time_join(*inputs, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct")
    expected = EXPECTED[:2] if kind == "file" else EXPECTED
    assert_values(out["v"], expected)
    assert out["t"].dt.tz is not None


def test_output_file_holds_the_same_rows(tmp_path: Path) -> None:
    spine, features = _example()
    kwargs = {"keys": ["k"], "spine_time": "t", "feature_time": "ft", "created_time": "ct"}
    in_memory = point_in_time_join(spine, features, **kwargs)
    written = point_in_time_join(spine, features, output=tmp_path / "out.parquet", **kwargs)
    assert written.empty
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), in_memory)


def test_ttl_bounds_are_inclusive() -> None:
    spine = pd.DataFrame({"k": ["a", "a"], "t": [minutes(10), minutes(11)]})
    features = pd.DataFrame({"k": ["a"], "ft": [minutes(5)], "v": [1.0]})
    out = point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                             ttl=dt.timedelta(minutes=5))
    assert_values(out["v"], [1.0, None])


def test_prefix_names_feature_columns_apart() -> None:
    spine, features = _example()
    spine["v"] = 0.0
    with pytest.raises(DataError, match=r"feature columns \['v'\] clash with spine columns"):
        point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft")
    out = point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct", prefix="f__")
    assert list(out.columns) == ["k", "t", "v", "f__v"]


@pytest.mark.parametrize("side", ["spine", "features"])
def test_naive_timestamps_are_rejected_with_a_fix(side: str) -> None:
    spine, features = _example()
    if side == "spine":
        spine["t"] = spine["t"].dt.tz_localize(None)
    else:
        features["ft"] = features["ft"].dt.tz_localize(None)
    column = "t" if side == "spine" else "ft"
    with pytest.raises(DataError, match=rf"{side}: column '{column}' is TIMESTAMP; .*timezone"):
        point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft")


@pytest.mark.parametrize(("created_time", "known_at_time"),
                         [("ct", True), ("ct", False), (None, True)])
@pytest.mark.parametrize("clash_value", [99.0, None])
def test_conflicting_ties_name_the_key_and_time(created_time: str | None, known_at_time: bool,
                                                clash_value: float | None) -> None:
    """Both plans (by visibility, by feature time) find a tie that differs in one value,
    also when the difference is a null, and also beside an exact duplicate."""
    spine, features = _example()
    if created_time is None:
        features = features.drop(columns=["ct"]).drop_duplicates("ft")
    clash = features.iloc[[0]].assign(v=clash_value)
    tied = pd.concat([features, features.iloc[[0]], clash])
    with pytest.raises(DataError, match=r"k='a' and ft=2024-03-01T00:02:00\+00:00"):
        point_in_time_join(spine, tied, keys=["k"], spine_time="t", feature_time="ft",
                           created_time=created_time, known_at_time=known_at_time)


@pytest.mark.parametrize("known_at_time", [True, False])
def test_a_null_correction_wins_like_any_value(known_at_time: bool) -> None:
    spine = pd.DataFrame({"k": ["a"], "t": [minutes(30)]})
    features = pd.DataFrame({"k": ["a", "a", "a"], "ft": [minutes(5)] * 3,
                             "ct": [minutes(5), minutes(6), minutes(7)],
                             "v": [1.0, 2.0, None]})
    out = point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct", known_at_time=known_at_time)
    assert_values(out["v"], [None])


@pytest.mark.parametrize("known_at_time", [True, False])
def test_times_before_1970_order_like_later_ones(known_at_time: bool) -> None:
    """The (ft, ct) pair is ranked as one number: negative epoch times must keep the order."""
    base = pd.Timestamp("1969-12-31T23:50Z")
    at = [base + pd.Timedelta(minutes=n) for n in range(20)]
    spine = pd.DataFrame({"k": ["a", "a", "a"], "t": [at[3], at[12], at[19]]})
    features = pd.DataFrame({"k": ["a"] * 4, "ft": [at[1], at[2], at[2], at[11]],
                             "ct": [at[1], at[2], at[15], at[11]], "v": [1.0, 2.0, 3.0, 4.0]})
    out = point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct", known_at_time=known_at_time)
    assert_values(out["v"], [2.0, 4.0, 4.0] if known_at_time else [3.0, 4.0, 4.0])


def test_identical_duplicate_rows_collapse() -> None:
    spine, features = _example()
    doubled = pd.concat([features, features], ignore_index=True)
    out = point_in_time_join(spine, doubled, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct")
    assert_values(out["v"], EXPECTED)


@pytest.mark.parametrize(("change", "message"), [
    (lambda s, f: (s.drop(columns=["t"]), f), r"spine: columns \['t'\] are missing"),
    (lambda s, f: (s, f.drop(columns=["k"])), r"features: columns \['k'\] are missing"),
    (lambda s, f: (s, f.assign(ct=f["ct"].where(f["v"] > 1))),
     "1 rows have a null 'ct'"),
])
def test_bad_inputs_name_side_and_column(change: Any, message: str) -> None:
    spine, features = change(*_example())
    with pytest.raises(DataError, match=message):
        point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                           created_time="ct")


def test_empty_inputs() -> None:
    spine, features = _example()
    out = point_in_time_join(spine, features.iloc[:0], keys=["k"], spine_time="t",
                             feature_time="ft", created_time="ct")
    assert len(out) == len(spine) and out["v"].isna().all()
    assert point_in_time_join(spine.iloc[:0], features, keys=["k"], spine_time="t",
                              feature_time="ft", created_time="ct").empty


@pytest.mark.parametrize("doubled", [False, True])
def test_known_at_time_follows_visibility_with_duplicates(doubled: bool) -> None:
    """A correction visible after a newer row never wins; one of the newest feature time wins
    from its created time, also when its value is null; of rows that become visible at the
    same time the greatest (ft, ct) wins; exact duplicates (each row twice) change nothing."""
    rows = [(2, 2, 1.0), (5, 5, 2.0), (2, 8, 3.0), (5, 9, None), (10, 12, 5.0), (12, 12, 6.0),
            (11, 12, 7.0)]
    features = pd.DataFrame({"k": "a", "ft": [minutes(r[0]) for r in rows],
                             "ct": [minutes(r[1]) for r in rows], "v": [r[2] for r in rows]})
    if doubled:
        features = pd.concat([features, features.iloc[::-1]], ignore_index=True)
    times = [1, 2, 4, 5, 8, 9, 11, 12, 13]
    spine = pd.DataFrame({"k": "a", "t": [minutes(t) for t in times]})
    out = point_in_time_join(spine, features, keys=["k"], spine_time="t", feature_time="ft",
                             created_time="ct")
    assert_values(out["v"], [None, 1.0, 1.0, 2.0, 2.0, None, None, 6.0, 6.0])
