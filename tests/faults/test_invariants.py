"""The invariant checks themselves fail on the faults they exist to catch (else every fault
case passing would prove nothing). Not fault cases: left out of README's table."""

from __future__ import annotations

import pytest

from pipelines import lake
from pipelines.lake import from_env as env_lake
from pipelines.spec import LoadedSpec
from pipelines.training_set import TrainingInput
from tests.faults import invariants


def test_the_lake_checks_pass_on_a_clean_lake_and_recheck_every_file(built: TrainingInput) -> None:
    invariants.assert_all_committed()
    assert invariants.assert_manifests_match() >= 7  # 3 raw, 3 feature partitions, the set
    invariants.assert_trained_on_recorded(built)


def test_a_partition_without_manifest_or_stray_data_is_caught(ingested: LoadedSpec) -> None:
    partition = lake.list_partitions(env_lake(), "sensors", "raw", "readings")[0]
    (partition.path / lake.MANIFEST).unlink()
    with pytest.raises(AssertionError, match="visible partition without manifest"):
        invariants.assert_all_committed()
    stray = lake.pipeline_dir(env_lake(), "sensors", "raw", "readings") / "loose.parquet"
    stray.write_bytes(b"x")
    partition.path.rename(partition.path.parent / ".tmp-left")
    with pytest.raises(AssertionError, match="stray data"):
        invariants.assert_all_committed()
    stray.unlink()
    with pytest.raises(AssertionError, match="stray data in a hidden folder"):
        invariants.assert_all_committed()


def test_changed_bytes_and_unlisted_files_are_caught(built: TrainingInput) -> None:
    partition = lake.list_partitions(env_lake(), "sensors", "features", "last")[1]
    extra = partition.data_path.parent / "extra.parquet"  # inside the committed generation
    extra.write_bytes(b"x")
    with pytest.raises(AssertionError, match="files not in its manifest"):
        invariants.assert_manifests_match()
    extra.unlink()
    invariants.flip_byte(partition.data_path)
    with pytest.raises(AssertionError, match="bytes != manifest sha256"):
        invariants.assert_manifests_match()
    with pytest.raises(AssertionError, match="not the bytes recorded"):
        invariants.assert_trained_on_recorded(built)
