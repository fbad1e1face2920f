"""The champion's lifecycle on a real MLflow store: versions carry lineage, aliases move only
on promote, a failed registration leaves no version behind, a pair registers once.

Champion moves: promotion by the gate, `promote` by hand and `rollback` each append a record
(action, version, previous holder, who, when, why) to the model's history, in order; a version
the gate refuses gets `challenger`; refused moves (no reason, unknown version or model, already
champion, nothing to roll back to) change neither aliases nor history, and a move whose record
cannot be written puts the alias back."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from pipelines import champion, registry
from pipelines.champion import Registered
from pipelines.errors import LineageError
from pipelines.evaluate import EvaluationSummary, ProblemTally, Verdict
from pipelines.lineage import Pair
from pipelines.registry import CHALLENGER, CHAMPION, TrainedRun
from pipelines.spec import LoadedSpec

from .conftest import amend, log_tiny_model

TAGS = {key: f"value-of-{key}" for key in registry.LINEAGE_TAGS}


def _register(name: str, logged: TrainedRun, pair: str, promote: bool,
              model_id: str | None = None, by: str = "ci",
              reason: str = "passed the evaluation gate") -> str:
    return champion.register(
        name, logged.run_id, logged.model_uri, model_id or logged.model_id,
        {**TAGS, "pair_id": pair, "verdict": "passed" if promote else "rejected"},
        f"description of {pair}", promote, by, reason)


def _live_versions(name: str) -> list[str]:
    return sorted(str(v.version) for v in
                  registry.client().search_model_versions(f"name = '{name}'"))


def _aliases(name: str) -> dict[str, list[str]]:
    """Aliases by version (search results carry none, so each version is read)."""
    return {v: sorted(registry.client().get_model_version(name, v).aliases)
            for v in _live_versions(name)}


def _state(name: str) -> tuple[dict[str, list[str]], list[dict[str, Any]]] | None:
    """Aliases and champion history; None when the registered model does not exist."""
    try:
        return _aliases(name), champion.champion_history(name)
    except MlflowException:
        return None


def _moves(name: str) -> list[tuple[str, str, str | None, str, str]]:
    """(action, version, previous, by, reason) of every recorded move, oldest first."""
    return [(m["action"], m["version"], m["previous"], m["by"], m["reason"])
            for m in champion.champion_history(name)]


def _champion(name: str) -> str | None:
    found = registry.champion_version(name)
    return None if found is None else str(found.version)


# --- register ------------------------------------------------------------------------------


def test_register_creates_version_with_all_tags_and_description(logged: TrainedRun,
                                                                model_name: str) -> None:
    """The version holds every lineage tag, the description, run and model; the logged model
    points back at the version."""
    version = _register(model_name, logged, "pair-a", promote=False)
    assert version == "1"
    stored = registry.client().get_model_version(model_name, version)
    assert stored.tags == {**TAGS, "pair_id": "pair-a", "verdict": "rejected"}
    assert stored.description == "description of pair-a"
    assert stored.run_id == logged.run_id
    assert stored.source == logged.model_uri  # models:/<model_id>
    tags = registry.client().get_logged_model(logged.model_id).tags
    assert tags["registered_version"] == version


def test_register_appends_versions_to_an_existing_model(logged: TrainedRun,
                                                       model_name: str) -> None:
    assert [_register(model_name, logged, p, promote=False) for p in ("a", "b", "c")] == [
        "1", "2", "3"]
    assert _live_versions(model_name) == ["1", "2", "3"]


@pytest.mark.parametrize(("promote", "holder"), [(True, "2"), (False, "1")])
def test_champion_moves_only_on_promote(logged: TrainedRun, model_name: str, promote: bool,
                                        holder: str) -> None:
    """promote=True moves `champion` to the new version; promote=False leaves it where it was."""
    assert registry.champion_version(model_name) is None  # no model yet
    _register(model_name, logged, "first", promote=True)
    assert _champion(model_name) == "1"
    _register(model_name, logged, "second", promote=promote)
    found = registry.champion_version(model_name)
    assert found is not None and str(found.version) == holder
    assert found.tags["pair_id"] == ("second" if promote else "first")
    aliases = _aliases(model_name)
    assert CHAMPION in aliases[holder]
    assert sum(CHAMPION in a for a in aliases.values()) == 1


def test_no_champion_without_promotion(logged: TrainedRun, model_name: str) -> None:
    _register(model_name, logged, "only", promote=False)
    assert registry.champion_version(model_name) is None


@pytest.mark.parametrize("promote", [False, True])
def test_failed_registration_leaves_no_version(logged: TrainedRun, model_name: str,
                                               promote: bool) -> None:
    """If tagging the logged model fails after the version exists, the version is deleted."""
    _register(model_name, logged, "good", promote=True)
    with pytest.raises(MlflowException, match="m-does-not-exist"):
        _register(model_name, logged, "bad", promote=promote, model_id="m-does-not-exist")
    assert _live_versions(model_name) == ["1"]
    assert registry.find_version(model_name, "bad") is None
    assert str(registry.find_version(model_name, "good").version) == "1"
    # the next successful registration still works (version numbers are never reused)
    assert _register(model_name, logged, "next", promote=False) == "3"


def test_failed_promotion_keeps_the_previous_champion(logged: TrainedRun,
                                                      model_name: str) -> None:
    """A registration that fails changes nothing: the old champion stays champion."""
    _register(model_name, logged, "good", promote=True)
    with pytest.raises(MlflowException):
        _register(model_name, logged, "bad", promote=True, model_id="m-does-not-exist")
    assert _champion(model_name) == "1"
    assert _moves(model_name) == [("gate", "1", None, "ci", "passed the evaluation gate")]


# --- champion history, challenger, promote and rollback ------------------------------------


def test_promotion_through_register_records_a_gate_move(logged: TrainedRun,
                                                        model_name: str) -> None:
    """Who, when, why, the previous holder and the version's verdict are kept per move."""
    _register(model_name, logged, "first", promote=True, by="alice", reason="first model")
    _register(model_name, logged, "second", promote=True, by="bob", reason="better AUC")
    history = champion.champion_history(model_name)
    assert _moves(model_name) == [("gate", "1", None, "alice", "first model"),
                                  ("gate", "2", "1", "bob", "better AUC")]
    assert [m["verdict"] for m in history] == ["passed", "passed"]
    for move in history:
        at = dt.datetime.fromisoformat(move["at"])
        assert at.utcoffset() == dt.timedelta(0)
        assert abs(dt.datetime.now(dt.UTC) - at) < dt.timedelta(minutes=5)
    assert sorted(registry.client().get_registered_model(model_name).tags) == [
        "champion_history.0001", "champion_history.0002"]


def test_a_version_not_promoted_becomes_challenger(logged: TrainedRun, model_name: str) -> None:
    """`challenger` points at the latest refused version; the champion and its history stay."""
    _register(model_name, logged, "good", promote=True)
    _register(model_name, logged, "worse", promote=False)
    assert _aliases(model_name) == {"1": [CHAMPION], "2": [CHALLENGER]}
    _register(model_name, logged, "worse-again", promote=False)
    assert _aliases(model_name) == {"1": [CHAMPION], "2": [], "3": [CHALLENGER]}
    assert _moves(model_name) == [("gate", "1", None, "ci", "passed the evaluation gate")]


def test_promote_by_hand_records_who_why_and_the_previous_holder(logged: TrainedRun,
                                                                 model_name: str) -> None:
    _register(model_name, logged, "good", promote=True)
    _register(model_name, logged, "reviewed", promote=False)
    move = champion.promote(model_name, "2", "carol", "slice drop reviewed: seasonal")
    assert (move["action"], move["version"], move["previous"], move["by"], move["reason"],
            move["verdict"]) == ("promote", "2", "1", "carol", "slice drop reviewed: seasonal",
                                 "rejected")
    assert champion.champion_history(model_name)[-1] == move
    assert _champion(model_name) == "2"
    assert CHAMPION not in _aliases(model_name)["1"]


@pytest.mark.parametrize(("version", "reason", "says"), [
    ("2", "", "say why"),
    ("2", "   ", "say why"),
    ("99", "looks fine", "has no version 99"),
    ("1", "again", "version 1 is already champion"),
])
def test_promote_refusals_change_nothing(logged: TrainedRun, model_name: str, version: str,
                                         reason: str, says: str) -> None:
    _register(model_name, logged, "good", promote=True)
    _register(model_name, logged, "other", promote=False)
    before = _state(model_name)
    with pytest.raises(LineageError, match=f"promote: .*{says}"):
        champion.promote(model_name, version, "carol", reason)
    assert _state(model_name) == before


def test_promote_an_unknown_model_is_refused(model_name: str) -> None:
    with pytest.raises(LineageError, match=f"promote: {model_name} has no version 1"):
        champion.promote(model_name, "1", "carol", "why not")


def test_rollback_restores_the_previous_champion_and_records_both_moves(
        logged: TrainedRun, model_name: str) -> None:
    _register(model_name, logged, "good", promote=True, by="airflow")
    _register(model_name, logged, "new", promote=True, by="airflow")
    move = champion.rollback(model_name, "dave", "complaints about v2 in the morning")
    assert (move["action"], move["version"], move["previous"]) == ("rollback", "1", "2")
    assert _champion(model_name) == "1"
    assert _aliases(model_name) == {"1": [CHAMPION], "2": []}
    assert _moves(model_name) == [
        ("gate", "1", None, "airflow", "passed the evaluation gate"),
        ("gate", "2", "1", "airflow", "passed the evaluation gate"),
        ("rollback", "1", "2", "dave", "complaints about v2 in the morning")]


def test_rollback_after_a_manual_promotion(logged: TrainedRun, model_name: str) -> None:
    _register(model_name, logged, "good", promote=True)
    _register(model_name, logged, "challenger", promote=False)
    champion.promote(model_name, "2", "carol", "reviewed")
    champion.rollback(model_name, "dave", "it was not")
    assert [m[:3] for m in _moves(model_name)] == [
        ("gate", "1", None), ("promote", "2", "1"), ("rollback", "1", "2")]
    assert _champion(model_name) == "1"


@pytest.mark.parametrize(("promoted", "reason", "says"), [
    ([True], "undo", "has no previous champion"),          # the first champion
    ([False], "undo", "has no previous champion"),         # never a champion
    ([], "undo", "no registered model"),
    ([True, True], " ", "say why"),
], ids=["first-champion", "challengers-only", "no-model", "no-reason"])
def test_rollback_refusals_change_nothing(logged: TrainedRun, model_name: str,
                                          promoted: list[bool], reason: str, says: str) -> None:
    for i, promote in enumerate(promoted):
        _register(model_name, logged, f"pair-{i}", promote=promote)
    before = _state(model_name)
    with pytest.raises(LineageError, match=f"rollback: .*{says}"):
        champion.rollback(model_name, "dave", reason)
    assert _state(model_name) == before


def test_a_move_whose_record_fails_puts_the_alias_back(logged: TrainedRun, model_name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The champion never changes without a record: if the history tag cannot be written the
    alias returns to the previous holder."""
    import mlflow

    _register(model_name, logged, "good", promote=True)
    _register(model_name, logged, "other", promote=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException("tag store unavailable")

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_tag", refuse)
    with pytest.raises(MlflowException, match="tag store unavailable"):
        champion.promote(model_name, "2", "carol", "reviewed")
    assert _aliases(model_name) == {"1": [CHAMPION], "2": [CHALLENGER]}
    assert len(champion.champion_history(model_name)) == 1


# --- register_pair: one version per pair, with the run's lineage and the verdict -----------


REASONS = ["roc_auc 0.5500 is below the floor 0.6", "problem fog: solves 3/12 cases"]


def _summary(passed: bool, champion_version: str | None = None) -> EvaluationSummary:
    return EvaluationSummary(
        eval_dataset_id="e" * 64, eval_rows=48, metrics={"roc_auc": 0.55, "brier": 0.2},
        champion_version=champion_version,
        verdict=Verdict(passed, [] if passed else REASONS, ["a note for the reader"]),
        problems={"fog": ProblemTally(3, 12)})


@pytest.mark.parametrize("passed", [True, False])
def test_register_pair_registers_once_with_the_runs_lineage_and_the_verdict(
        tiny: LoadedSpec, model_name: str, passed: bool) -> None:
    """Only lineage tags come over from the run; the verdict (and why it was refused) is
    added; a passed pair becomes champion, moved by the run's `triggered_by` for its reason;
    the description names the IDs, metrics, notes, problems and where to look; a second call
    finds the version and creates nothing."""
    spec = amend(tiny, model_name=model_name)
    run = log_tiny_model({**TAGS, "pair_id": "p" * 64, "triggered_by": "alice",
                        "reason": "monthly retrain", "mlflow.note.content": "not lineage",
                        "task": "binary"})
    pair = Pair("p" * 64, "d" * 64, "c" * 64)
    registered = champion.register_pair(spec, pair, run, _summary(passed))
    assert registered == Registered(model_name, "1", new=True, champion=passed,
                                    run_id=run.run_id)
    stored = registry.client().get_model_version(model_name, "1")
    verdict = {"verdict": "passed"} if passed else {
        "verdict": "rejected", "rejected_reason": "; ".join(REASONS)}
    assert stored.tags == {**TAGS, "pair_id": "p" * 64, "triggered_by": "alice",
                           "reason": "monthly retrain", **verdict,
                           "monitoring_reference": f"runs:/{run.run_id}/monitoring/reference.json"}
    assert stored.aliases == [CHAMPION if passed else CHALLENGER]
    description = stored.description.splitlines()
    assert description[:4] == [f"pair_id {'p' * 64}", f"dataset_id {'d' * 64}",
                               "verdict: passed" if passed else
                               f"verdict: rejected ({'; '.join(REASONS)})",
                               "evaluation on 48 rows: roc_auc 0.5500, brier 0.2000"]
    assert "note: a note for the reader" in description
    assert "known problems: fog 3/12" in description
    assert f"report: runs:/{run.run_id}/evaluation/report.html" in description
    assert _moves(model_name) == ([("gate", "1", None, "alice", "monthly retrain")]
                                  if passed else [])

    again = champion.register_pair(spec, pair, run, _summary(passed))
    assert (again.version, again.new, again.run_id) == ("1", False, None)
    assert _live_versions(model_name) == ["1"]


def test_register_pair_again_says_the_version_is_champion(tiny: LoadedSpec,
                                                          model_name: str) -> None:
    spec = amend(tiny, model_name=model_name)
    run = log_tiny_model({**TAGS, "pair_id": "q" * 64})
    pair = Pair("q" * 64, "d" * 64, "c" * 64)
    champion.register_pair(spec, pair, run, _summary(True))
    assert champion.register_pair(spec, pair, run, _summary(True)).champion is True


def test_describe_version_names_the_champion_compared_with(logged: TrainedRun) -> None:
    pair = Pair("p" * 64, "d" * 64, "c" * 64)
    text = champion.describe_version("sensors", pair, logged, _summary(True, "4"),
                                     {"verdict": "passed"})
    assert (f"compared with champion version 4 on the same rows (eval_dataset_id "
            f"{'e' * 16}…)") in text.splitlines()
    alone = champion.describe_version("sensors", pair, logged, _summary(True),
                                      {"verdict": "passed"})
    assert "compared with" not in alone
    assert "(trace with `pitstop trace sensors/<version>`)" in alone
