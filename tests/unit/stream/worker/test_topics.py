"""The topic layout: one source for the worker's declarations and ``stream topics``."""

from __future__ import annotations

import doctest

import pytest

import stream.worker.topics
from stream.settings import Settings, SettingsError
from stream.worker.topics import COMPACTED, ROLES, layout


def test_docstring_examples_run() -> None:
    result = doctest.testmod(stream.worker.topics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_layout_follows_the_settings() -> None:
    settings = Settings.from_env(
        {
            "RTP_PARTITIONS": "8",
            "RTP_INPUT_PARTITIONS": "12",
            "RTP_TOPIC_REPLICATION": "3",
            "RTP_TOPIC_MIN_INSYNC": "2",
            "RTP_TOPIC_RETENTION_HOURS": "24",
        }
    )
    specs = {spec.role: spec for spec in layout(settings)}
    assert list(specs) == list(ROLES)
    assert specs["input"].partitions == 12 and specs["dlq"].partitions == 1
    assert {specs[r].partitions for r in ROLES if r not in ("input", "dlq")} == {8}
    for role, spec in specs.items():
        assert spec.replication == 3 and spec.config["min.insync.replicas"] == "2"
        if role in COMPACTED:
            assert spec.config["cleanup.policy"] == "compact" and "retention.ms" not in spec.config
        else:
            assert spec.config == {
                "min.insync.replicas": "2",
                "cleanup.policy": "delete",
                "retention.ms": str(24 * 3_600_000),
            }


def test_min_insync_above_replication_is_refused_with_both_names() -> None:
    with pytest.raises(
        SettingsError, match="RTP_TOPIC_MIN_INSYNC=2 exceeds RTP_TOPIC_REPLICATION=1"
    ):
        Settings.from_env({"RTP_TOPIC_MIN_INSYNC": "2"})
