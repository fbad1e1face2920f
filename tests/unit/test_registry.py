"""The registry on a real MLflow store: versions carry lineage, aliases move only on promote,
and a failed registration leaves no version behind."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from mlflow.exceptions import MlflowException

from pipelines import registry

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
