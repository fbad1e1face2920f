"""Batch scoring of the tiny pipeline: the train chain registers a champion with its
monitoring reference, then a week of days is scored and monitored.

The readings here follow each sensor's daily cycle, so the last reading predicts the next
one (the model learns something and the gate passes); from BAD on, the upstream file
reports the value in another unit (times 1000), the seed story's silent failure.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines import features, ingest, lake, quality, registry, scoring, steps, train, training_set
from pipelines.lake import from_env as env_lake
from pipelines.monitoring import Reference
from pipelines.provenance import ProducedBy
from pipelines.spec import LoadedSpec
from tests.unit.conftest import D1, D4, amend

LAST = D1 + dt.timedelta(days=10)
"""End (exclusive) of the landed days: a week of scoring after the training window."""
BAD = D1 + dt.timedelta(days=7)
"""First day whose upstream file holds the value times 1000."""


def write_cycle(landing: Path, day: dt.date, scale: float = 1.0) -> None:
    """Hourly readings of three sensors on a daily sine cycle with a little seeded noise."""
    rng = np.random.default_rng(day.toordinal())
    times = pd.date_range(pd.Timestamp(day, tz="UTC"), periods=24, freq="h")
    rows = [(sensor, t, scale * (0.5 + 0.4 * np.sin(2 * np.pi * (t.hour + 6 * phase) / 24)
                                 + rng.normal(0, 0.02)))
            for phase, sensor in enumerate("abc") for t in times]
    frame = pd.DataFrame(rows, columns=["sensor", "ts", "value"])
    out = landing / "readings" / f"{day.isoformat()}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(ts=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(out, index=False)


def _quality_stub(spec: LoadedSpec) -> quality.QualitySummary:
    """The GX step's summary without GX (the training suite is not what is tested here)."""
    result = lake.pipeline_dir(env_lake(), spec.name, "result.json")
    result.parent.mkdir(parents=True, exist_ok=True)
    result.write_text("{}")
    return quality.QualitySummary("sensors_training_set", True, 0, 0, env_lake().relative(result),
                                  "", "")


@pytest.fixture
def registered(tiny: LoadedSpec) -> tuple[LoadedSpec, training_set.TrainingInput]:
    """Ten landed days (ingested, features computed), the model of D1..D4 trained through
    the train chain's own steps and registered as champion of a model name of its own."""
    spec = amend(tiny, model={"preprocessing": {"impute": {"numeric": "median"}}},
                 model_name=f"sensors-{uuid.uuid4().hex[:10]}")
    spec.suite_path("sensors_training_set").write_text(json.dumps(
        {"name": "sensors_training_set", "expectations": []}))
    for day in lake.days(D1, LAST):
        write_cycle(spec.landing_dir(), day, 1000.0 if day >= BAD else 1.0)
    ingest.ingest(env_lake(), spec, "readings", D1, LAST)
    features.compute_view(env_lake(), spec, "last", D1, LAST)
    built = training_set.prepare(env_lake(), spec, D1, D4)
    pair = steps.plan_pair(spec, built)
    run = steps.train_model(env_lake(), spec, built, _quality_stub(spec), pair, ProducedBy())
    evaluation = steps.evaluate_model(env_lake(), spec, built, run)
    done = steps.register_model(spec, pair, run, evaluation)
    assert done.champion, evaluation.verdict
    return spec, built


def test_a_scored_day_matches_the_evaluation_predictions(registered: tuple) -> None:
    """The same rows, scored by the batch path, get the evaluation's predictions exactly,
    and the reference kept at registration holds those predictions."""
    spec, built = registered
    pinned = scoring.pin_model(spec)
    assert (pinned.version, pinned.alias) == ("1", "champion")
    day = built.split.eval_start
    result = scoring.score_day(env_lake(), spec, pinned, day)
    assert result.usable and result.rows == 72
    scored = pd.read_parquet(lake.committed_file(env_lake().root / result.path))
    frame = training_set.read_training_set(env_lake(), built.training_set)
    _, rows = training_set.split_frame(frame, spec, built.split)
    expected = pd.Series(train.predict(registry.load_model(pinned.model_uri), rows),
                         index=rows["reading_id"])
    same = scored.set_index("reading_id").loc[expected.index]
    assert len(same) == len(rows) == 69  # the day's rows whose cutoff is in the day
    np.testing.assert_array_equal(same["prediction"].to_numpy(), expected.to_numpy())
    reference = Reference.from_json(registry.load_json(pinned.reference_uri))
    assert reference.prediction.sample == sorted(expected.tolist())
    manifest = lake.read_manifest(env_lake().root / result.path)
    assert manifest["model_version"] == "1" and manifest["pair_id"] == pinned.pair_id
    read = {p["path"]: p["sha256"] for p in manifest["inputs"]["features"]["last"]}
    assert read == {env_lake().relative(p.path): p.sha256 for p in
                    features.feature_partitions(env_lake(), spec, "last", day, day + dt.timedelta(days=1))}


def test_the_unit_change_fails_its_first_day_and_the_days_before_pass(registered: tuple) -> None:
    spec, _ = registered
    pinned = scoring.pin_model(spec)
    for day in lake.days(D4, BAD):
        assert scoring.score_day(env_lake(), spec, pinned, day).usable, day
    with pytest.raises(scoring.MonitoringBreach) as breach:
        scoring.score_day(env_lake(), spec, pinned, BAD)
    assert "psi of last__value is" in str(breach.value) and "limit 0.25" in str(breach.value)
    verdicts = {v.day: v for v in scoring.day_verdicts(env_lake(), spec, D4, BAD + dt.timedelta(days=2))}
    assert [verdicts[d].usable for d in lake.days(D4, BAD)] == [True] * 4
    assert verdicts[BAD].scored and not verdicts[BAD].usable
    assert not verdicts[BAD + dt.timedelta(days=1)].scored
    assert any("last__value" in b for b in verdicts[BAD].breaches)
    version = registry.client().get_model_version(pinned.model_name, pinned.version)
    assert "last__value" in version.tags[f"{scoring.BREACH_TAG}.{BAD.isoformat()}"]
    assert f"{scoring.BREACH_TAG}.{(BAD - dt.timedelta(days=1)).isoformat()}" not in version.tags
    page = registry.client().download_artifacts(pinned.run_id, "monitoring/report.html")
    text = Path(page).read_text()
    assert "2024-01-04 to 2024-01-08 (5 days)" in text and "data:image/png;base64," in text
    breaches = text.split("<h2>Breaches</h2>")[1].split("<h2>")[0]
    assert f"<td>{BAD.isoformat()}</td><td>last__value</td><td>psi</td>" in breaches
    assert "2024-01-07" not in breaches  # the days that passed have no breach rows


def test_every_value_is_kept_every_day(registered: tuple) -> None:
    """In the lake's table and as metrics of one MLflow run per version and day; scoring the
    day again replaces its partition and logs into the same run."""
    spec, _ = registered
    pinned = scoring.pin_model(spec)
    first = scoring.score_day(env_lake(), spec, pinned, D4)
    again = scoring.score_day(env_lake(), spec, pinned, D4)
    assert again.monitoring_run_id == first.monitoring_run_id
    table = scoring.read_monitoring(env_lake(), spec)
    assert set(table["day"]) == {D4.isoformat()}
    assert {("psi", "last__value"), ("null_rate", "last__value"), ("mean", "prediction"),
            ("share_above_threshold", "prediction")} <= set(zip(table["metric"], table["feature"],
                                                                 strict=True))
    run = registry.client().get_run(first.monitoring_run_id)
    assert run.data.tags["monitoring_day"] == D4.isoformat() and run.data.tags["verdict"] == "passed"
    assert {"feature.last__value.psi", "prediction.ks", "scoring_seconds"} <= set(run.data.metrics)
    manifest = lake.read_manifest(lake.partition_dir(env_lake(), spec.name, scoring.SCORES,
                                                     pinned.model_name, D4))
    assert manifest["usable"] is True and json.dumps(manifest["breaches"]) == "[]"


def test_the_pinned_version_links_to_its_monitoring_report() -> None:
    """The link on `pin_model` is computed from its XCom, as the API server does."""
    from pipelines.orchestration import links, xcom

    pinned = scoring.PinnedModel("m", "champion", "3", "abc123", "p" * 64,
                                 "runs:/abc123/monitoring/reference.json")
    url = links.monitoring_report_url(xcom.dump(pinned))
    assert url.endswith("/get-artifact?path=monitoring%2Freport.html&run_uuid=abc123")
    assert links.monitoring_report_url({"run_id": "abc123"}) == ""  # not a pinned version


def test_no_version_with_the_alias_says_what_to_do(tiny: LoadedSpec) -> None:
    spec = amend(tiny, model_name=f"sensors-{uuid.uuid4().hex[:10]}")
    with pytest.raises(scoring.DataError, match="has no version with alias 'champion'"):
        scoring.pin_model(spec)
