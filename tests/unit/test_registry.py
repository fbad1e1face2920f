"""The registry module on a real MLflow store: experiments, finding a pair's version, version
order, tag limits, and a store that cannot be reached is an error, never "not registered".

Registering, promoting and rolling back (the champion's lifecycle) are in
`test_champion.py`."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from mlflow.exceptions import MlflowException

from pipelines import registry
from pipelines.registry import TrainedRun


def _add_version(name: str, logged: TrainedRun, pair: str) -> str:
    """A version of `name` tagged with `pair`, made with the MLflow client itself, so these
    tests do not depend on `champion.register`."""
    mlflow_client = registry.client()
    if not mlflow_client.search_registered_models(f"name = '{name}'"):
        mlflow_client.create_registered_model(name)
    return str(mlflow_client.create_model_version(
        name, source=logged.model_uri, run_id=logged.run_id, tags={"pair_id": pair},
        model_id=logged.model_id).version)


def test_experiment_id_is_idempotent() -> None:
    name = f"test-exp-{uuid.uuid4().hex[:8]}"
    first = registry.experiment_id(name)
    assert registry.experiment_id(name) == first
    assert registry.client().get_experiment(first).name == name


def test_find_version_by_pair_id(logged: TrainedRun, model_name: str) -> None:
    """The version of a pair is found by its pair_id tag; other pairs and models find none;
    of two versions of one pair, the newest."""
    _add_version(model_name, logged, "pair-a")
    _add_version(model_name, logged, "pair-b")
    assert str(registry.find_version(model_name, "pair-a").version) == "1"
    assert str(registry.find_version(model_name, "pair-b").version) == "2"
    assert registry.find_version(model_name, "pair-c") is None
    assert registry.find_version(f"{model_name}-other", "pair-a") is None
    _add_version(model_name, logged, "pair-a")
    assert str(registry.find_version(model_name, "pair-a").version) == "3"


@pytest.fixture
def unreachable_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking URI on a localhost port this test holds bound but never listens on, so
    every connection is refused; MLflow told not to retry."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{held.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
        yield uri


@pytest.mark.timeout(60)
def test_find_version_raises_when_the_store_cannot_be_reached(unreachable_store: str) -> None:
    """A re-run must not take "store down" for "pair not registered" and register the pair
    again: the error surfaces (and the task retries)."""
    with pytest.raises(MlflowException, match=f"API request to {unreachable_store}/.*failed"):
        registry.find_version("any-model", "any-pair")


def test_versions_are_oldest_first_by_number(logged: TrainedRun, model_name: str) -> None:
    """Numeric order (10 after 9), not text order; none for a model that does not exist."""
    assert registry.versions(model_name) == []
    for i in range(11):
        _add_version(model_name, logged, f"pair-{i}")
    assert [str(v.version) for v in registry.versions(model_name)] == [
        str(i) for i in range(1, 12)]


def test_champion_version_of_an_unknown_model_is_none(model_name: str) -> None:
    assert registry.champion_version(model_name) is None


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
