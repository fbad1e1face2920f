"""The registry on a real MLflow store: versions carry lineage, aliases move only on promote,
and a failed registration leaves no version behind.

Champion moves: promotion by the gate, `promote` by hand and `rollback` each append a record
(action, version, previous holder, who, when, why) to the model's history, in order; a version
the gate refuses gets `challenger`; refused moves (no reason, unknown version or model, already
champion, nothing to roll back to) change neither aliases nor history, and a move whose record
cannot be written puts the alias back."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from mlflow.exceptions import MlflowException

from pipelines import registry
from pipelines.errors import LineageError

TAGS = {key: f"value-of-{key}" for key in registry.LINEAGE_TAGS}


@dataclass(frozen=True)
class Logged:
    run_id: str
    model_uri: str
    model_id: str


@pytest.fixture(scope="module")
def logged() -> Logged:
    """A tiny real sklearn model logged in a run of its own experiment."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    experiment = registry.experiment_id(f"test-registry-{uuid.uuid4().hex[:8]}")
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=[])
    return Logged(run.info.run_id, info.model_uri, info.model_id)


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"test-model-{uuid.uuid4().hex[:12]}"


def _register(name: str, logged: Logged, pair: str, promote: bool,
              model_id: str | None = None) -> str:
    return registry.register(name, logged.run_id, logged.model_uri, model_id or logged.model_id,
                             {**TAGS, "pair_id": pair}, f"description of {pair}", promote)


def _live_versions(name: str) -> list[str]:
    return sorted(str(v.version) for v in
                  registry.client().search_model_versions(f"name = '{name}'"))


def test_experiment_id_is_idempotent() -> None:
    name = f"test-exp-{uuid.uuid4().hex[:8]}"
    first = registry.experiment_id(name)
    assert registry.experiment_id(name) == first
    assert registry.client().get_experiment(first).name == name


def test_register_creates_version_with_all_tags_and_description(logged: Logged,
                                                                model_name: str) -> None:
    """The version holds every lineage tag, the description, run and model; the logged model
    points back at the version."""
    version = _register(model_name, logged, "pair-a", promote=False)
    assert version == "1"
    stored = registry.client().get_model_version(model_name, version)
    assert stored.tags == {**TAGS, "pair_id": "pair-a"}
    assert stored.description == "description of pair-a"
    assert stored.run_id == logged.run_id
    assert stored.source == logged.model_uri  # models:/<model_id>
    tags = registry.client().get_logged_model(logged.model_id).tags
    assert tags["registered_version"] == version


def test_register_appends_versions_to_an_existing_model(logged: Logged, model_name: str) -> None:
    assert [_register(model_name, logged, p, promote=False) for p in ("a", "b", "c")] == [
        "1", "2", "3"]
    assert _live_versions(model_name) == ["1", "2", "3"]


@pytest.mark.parametrize(("promote", "champion"), [(True, "2"), (False, "1")])
def test_champion_moves_only_on_promote(logged: Logged, model_name: str, promote: bool,
                                        champion: str) -> None:
    """promote=True moves `champion` to the new version; promote=False leaves it where it was."""
    assert registry.champion_version(model_name) is None  # no model yet
    _register(model_name, logged, "first", promote=True)
    assert str(registry.champion_version(model_name).version) == "1"
    _register(model_name, logged, "second", promote=promote)
    found = registry.champion_version(model_name)
    assert found is not None and str(found.version) == champion
    assert found.tags["pair_id"] == ("second" if promote else "first")
    aliases = {v: list(registry.client().get_model_version(model_name, v).aliases)
               for v in _live_versions(model_name)}  # search results carry no aliases
    assert aliases[champion] == [registry.CHAMPION]
    assert sum(registry.CHAMPION in a for a in aliases.values()) == 1


def test_no_champion_without_promotion(logged: Logged, model_name: str) -> None:
    _register(model_name, logged, "only", promote=False)
    assert registry.champion_version(model_name) is None


def test_find_version_by_pair_id(logged: Logged, model_name: str) -> None:
    """The version of a pair is found by its pair_id tag; other pairs and models find none."""
    _register(model_name, logged, "pair-a", promote=False)
    _register(model_name, logged, "pair-b", promote=True)
    assert str(registry.find_version(model_name, "pair-a").version) == "1"
    assert str(registry.find_version(model_name, "pair-b").version) == "2"
    assert registry.find_version(model_name, "pair-c") is None
    assert registry.find_version(f"{model_name}-other", "pair-a") is None


@pytest.mark.parametrize("promote", [False, True])
def test_failed_registration_leaves_no_version(logged: Logged, model_name: str,
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


def test_failed_promotion_keeps_the_previous_champion(logged: Logged, model_name: str) -> None:
    """A registration that fails changes nothing: the old champion stays champion."""
    _register(model_name, logged, "good", promote=True)
    with pytest.raises(MlflowException):
        _register(model_name, logged, "bad", promote=True, model_id="m-does-not-exist")
    champion = registry.champion_version(model_name)
    assert champion is not None and str(champion.version) == "1"


# --- champion history, challenger, promote and rollback ------------------------------------


def _register_by(name: str, logged: Logged, pair: str, promote: bool, by: str = "ci",
                 reason: str = "passed the evaluation gate") -> str:
    return registry.register(name, logged.run_id, logged.model_uri, logged.model_id,
                             {**TAGS, "pair_id": pair, "verdict": "passed" if promote else
                              "rejected"}, f"description of {pair}", promote, by, reason)


def _aliases(name: str) -> dict[str, list[str]]:
    return {v: sorted(registry.client().get_model_version(name, v).aliases)
            for v in _live_versions(name)}


def _state(name: str) -> tuple[dict[str, list[str]], list[dict[str, Any]]] | None:
    """Aliases and champion history; None when the registered model does not exist."""
    try:
        return _aliases(name), registry.champion_history(name)
    except MlflowException:
        return None


def _moves(name: str) -> list[tuple[str, str, str | None, str, str]]:
    """(action, version, previous, by, reason) of every recorded move, oldest first."""
    return [(m["action"], m["version"], m["previous"], m["by"], m["reason"])
            for m in registry.champion_history(name)]


def test_promotion_through_register_records_a_gate_move(logged: Logged, model_name: str) -> None:
    """Who, when, why, the previous holder and the version's verdict are kept per move."""
    _register_by(model_name, logged, "first", promote=True, by="alice", reason="first model")
    _register_by(model_name, logged, "second", promote=True, by="bob", reason="better AUC")
    history = registry.champion_history(model_name)
    assert _moves(model_name) == [("gate", "1", None, "alice", "first model"),
                                  ("gate", "2", "1", "bob", "better AUC")]
    assert [m["verdict"] for m in history] == ["passed", "passed"]
    for move in history:
        at = dt.datetime.fromisoformat(move["at"])
        assert at.utcoffset() == dt.timedelta(0)
        assert abs(dt.datetime.now(dt.UTC) - at) < dt.timedelta(minutes=5)
    assert sorted(registry.client().get_registered_model(model_name).tags) == [
        "champion_history.0001", "champion_history.0002"]


def test_a_version_not_promoted_becomes_challenger(logged: Logged, model_name: str) -> None:
    """`challenger` points at the latest refused version; the champion and its history stay."""
    _register_by(model_name, logged, "good", promote=True)
    _register_by(model_name, logged, "worse", promote=False)
    assert _aliases(model_name) == {"1": [registry.CHAMPION], "2": [registry.CHALLENGER]}
    _register_by(model_name, logged, "worse-again", promote=False)
    assert _aliases(model_name) == {"1": [registry.CHAMPION], "2": [],
                                    "3": [registry.CHALLENGER]}
    assert _moves(model_name) == [("gate", "1", None, "ci", "passed the evaluation gate")]


def test_promote_by_hand_records_who_why_and_the_previous_holder(logged: Logged,
                                                                 model_name: str) -> None:
    _register_by(model_name, logged, "good", promote=True)
    _register_by(model_name, logged, "reviewed", promote=False)
    move = registry.promote(model_name, "2", "carol", "slice drop reviewed: seasonal")
    assert (move["action"], move["version"], move["previous"], move["by"], move["reason"],
            move["verdict"]) == ("promote", "2", "1", "carol", "slice drop reviewed: seasonal",
                                 "rejected")
    assert registry.champion_history(model_name)[-1] == move
    champion = registry.champion_version(model_name)
    assert champion is not None and str(champion.version) == "2"
    assert registry.CHAMPION not in _aliases(model_name)["1"]


@pytest.mark.parametrize(("version", "reason", "says"), [
    ("2", "", "say why"),
    ("2", "   ", "say why"),
    ("99", "looks fine", "has no version 99"),
    ("1", "again", "version 1 is already champion"),
])
def test_promote_refusals_change_nothing(logged: Logged, model_name: str, version: str,
                                         reason: str, says: str) -> None:
    _register_by(model_name, logged, "good", promote=True)
    _register_by(model_name, logged, "other", promote=False)
    before = _state(model_name)
    with pytest.raises(LineageError, match=f"promote: .*{says}"):
        registry.promote(model_name, version, "carol", reason)
    assert _state(model_name) == before


def test_promote_an_unknown_model_is_refused(model_name: str) -> None:
    with pytest.raises(LineageError, match=f"promote: {model_name} has no version 1"):
        registry.promote(model_name, "1", "carol", "why not")


def test_rollback_restores_the_previous_champion_and_records_both_moves(
        logged: Logged, model_name: str) -> None:
    _register_by(model_name, logged, "good", promote=True, by="airflow")
    _register_by(model_name, logged, "new", promote=True, by="airflow")
    move = registry.rollback(model_name, "dave", "complaints about v2 in the morning")
    assert (move["action"], move["version"], move["previous"]) == ("rollback", "1", "2")
    champion = registry.champion_version(model_name)
    assert champion is not None and str(champion.version) == "1"
    assert _aliases(model_name) == {"1": [registry.CHAMPION], "2": []}
    assert _moves(model_name) == [
        ("gate", "1", None, "airflow", "passed the evaluation gate"),
        ("gate", "2", "1", "airflow", "passed the evaluation gate"),
        ("rollback", "1", "2", "dave", "complaints about v2 in the morning")]


def test_rollback_after_a_manual_promotion(logged: Logged, model_name: str) -> None:
    _register_by(model_name, logged, "good", promote=True)
    _register_by(model_name, logged, "challenger", promote=False)
    registry.promote(model_name, "2", "carol", "reviewed")
    registry.rollback(model_name, "dave", "it was not")
    assert [m[:3] for m in _moves(model_name)] == [
        ("gate", "1", None), ("promote", "2", "1"), ("rollback", "1", "2")]
    champion = registry.champion_version(model_name)
    assert champion is not None and str(champion.version) == "1"


@pytest.mark.parametrize(("promoted", "reason", "says"), [
    ([True], "undo", "has no previous champion"),          # the first champion
    ([False], "undo", "has no previous champion"),         # never a champion
    ([], "undo", "no registered model"),
    ([True, True], " ", "say why"),
], ids=["first-champion", "challengers-only", "no-model", "no-reason"])
def test_rollback_refusals_change_nothing(logged: Logged, model_name: str, promoted: list[bool],
                                          reason: str, says: str) -> None:
    for i, promote in enumerate(promoted):
        _register_by(model_name, logged, f"pair-{i}", promote=promote)
    before = _state(model_name)
    with pytest.raises(LineageError, match=f"rollback: .*{says}"):
        registry.rollback(model_name, "dave", reason)
    assert _state(model_name) == before


def test_a_move_whose_record_fails_puts_the_alias_back(logged: Logged, model_name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The champion never changes without a record: if the history tag cannot be written the
    alias returns to the previous holder."""
    import mlflow

    _register_by(model_name, logged, "good", promote=True)
    _register_by(model_name, logged, "other", promote=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise MlflowException("tag store unavailable")

    monkeypatch.setattr(mlflow.MlflowClient, "set_registered_model_tag", refuse)
    with pytest.raises(MlflowException, match="tag store unavailable"):
        registry.promote(model_name, "2", "carol", "reviewed")
    assert _aliases(model_name) == {"1": [registry.CHAMPION], "2": [registry.CHALLENGER]}
    assert len(registry.champion_history(model_name)) == 1


def test_versions_are_oldest_first_by_number(logged: Logged, model_name: str) -> None:
    """Numeric order (10 after 9), not text order; none for a model that does not exist."""
    assert registry.versions(model_name) == []
    for i in range(11):
        _register(model_name, logged, f"pair-{i}", promote=False)
    assert [str(v.version) for v in registry.versions(model_name)] == [
        str(i) for i in range(1, 12)]


@pytest.mark.parametrize("length", [0, 10, 4000, 4001, 20_000])
def test_clip_keeps_tags_within_the_limit(length: int) -> None:
    text = "x" * length
    clipped = registry.clip(text)
    assert len(clipped) <= 4000
    if length <= 4000:
        assert clipped == text
    else:
        assert clipped.startswith("x" * 3900)
        assert clipped.endswith("(more in evaluation.json)")
