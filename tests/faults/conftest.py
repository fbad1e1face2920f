"""The fault suite reuses the unit tests' tiny `sensors` pipeline as it is: the fixtures
`tiny`, `ingested` and `built` are re-exported from tests/unit/conftest.py (not copied), so a
fault case runs on exactly what the unit tests run on."""

import pytest

from tests.faults import invariants
from tests.unit.conftest import built, ingested, tiny  # noqa: F401 (fixtures, re-exported)


@pytest.fixture(scope="session")
def clean_dataset_id(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The dataset_id of a clean run of the tiny pipeline over D1..D4, in a lake of its own:
    what every fault case's re-run must give once its input is fixed."""
    folder = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PITSTOP_LAKE", str(folder / "lake"))
        return invariants.run_clean(invariants.make_tiny(folder))
