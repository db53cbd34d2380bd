"""Sources: the typed input position whose key names the offset fence."""

from __future__ import annotations

import doctest

import pytest

import profiles.core.partition
import profiles.core.profile
from profiles.core.partition import InputPartition


@pytest.mark.parametrize("module", [profiles.core.partition, profiles.core.profile])
def test_docstring_examples(module: object) -> None:
    result = doctest.testmod(module)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("source", "key"),
    [
        (InputPartition("site-events", 0), "site-events:0"),
        (InputPartition("site-events", 11, 0), "site-events:11"),
        (InputPartition("a.b_c-d", 3, 2), "a.b_c-d#2:3"),
    ],
)
def test_keys_are_the_stored_fence_names_and_parse_back(source: InputPartition, key: str) -> None:
    # The key is what profiles, popularity fences and bundles already store: unchanged.
    assert source.key == key == str(source)
    assert InputPartition.parse(key) == source
    assert InputPartition.parse(key).epoch == source.epoch


def test_equality_and_hash_follow_the_position() -> None:
    assert InputPartition("t", 1, 2) == InputPartition.parse("t#2:1")
    assert (
        len(
            {
                InputPartition("t", 1),
                InputPartition("t", 1, 0),
                InputPartition("t", 1, 1),
                InputPartition("t", 2),
            }
        )
        == 3
    )


@pytest.mark.parametrize(
    "key", ["", "t", "t:", ":1", "t:x", "t:-1", "t#x:1", "t#:1", "t#0:1", "t:01", "#1:2"]
)
def test_keys_that_name_no_source_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="not a source key"):
        InputPartition.parse(key)


@pytest.mark.parametrize(
    ("topic", "partition", "epoch"), [("t", -1, 0), ("t", 0, -1), ("a:b", 0, 0), ("a#b", 0, 0)]
)
def test_impossible_sources_are_refused(topic: str, partition: int, epoch: int) -> None:
    with pytest.raises(ValueError):
        InputPartition(topic, partition, epoch)
