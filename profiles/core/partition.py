"""Where a record comes from: an input partition in one fence epoch.

Offset fences are kept per source. The stored form of a source (the key of a profile's
``fences``, of the popularity counters' fences and of the records in a bundle) is its
:attr:`InputPartition.key`: ``<topic>:<partition>``, or ``<topic>#<epoch>:<partition>`` once the
partition's offsets started again (``stream/worker/epochs.py``). Code works with the
typed value; only the stores and the bundle format see the string.

>>> s = InputPartition("site-events", 3)
>>> s.key, InputPartition.parse(s.key) == s
('site-events:3', True)
>>> InputPartition.parse("site-events#2:3")
InputPartition(topic='site-events', partition=3, epoch=2)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class InputPartition:
    topic: str
    partition: int
    epoch: int = 0  # 0 until the partition's offsets restart (a re-created topic)
    key: str = field(init=False, repr=False, compare=False)  # the stored form

    def __post_init__(self) -> None:
        if self.partition < 0 or self.epoch < 0:
            raise ValueError(f"a source needs a partition and epoch >= 0, not {self!r}")
        if ":" in self.topic or "#" in self.topic:
            raise ValueError(f"a topic name has no ':' or '#': {self.topic!r}")
        key = (
            f"{self.topic}:{self.partition}"
            if self.epoch == 0
            else f"{self.topic}#{self.epoch}:{self.partition}"
        )
        object.__setattr__(self, "key", key)  # computed once: the hot path reads it per event

    def __str__(self) -> str:
        return self.key

    @staticmethod
    def parse(key: str) -> InputPartition:
        """The source a stored key names (``ValueError`` if it names none)."""
        return _parse(key)


@functools.lru_cache(maxsize=4096)  # a worker reads few partitions; bundles repeat them
def _parse(key: str) -> InputPartition:
    head, sep, partition = key.rpartition(":")
    topic, _, epoch = head.partition("#")
    if not sep or not topic or not partition.isdigit() or not (epoch == "" or epoch.isdigit()):
        raise ValueError(f"not a source key: {key!r}")
    parsed = InputPartition(topic, int(partition), int(epoch or 0))
    if parsed.key != key:  # e.g. "t#:1", "t#0:1", "t:01": only the form we write names one
        raise ValueError(f"not a source key: {key!r}")
    return parsed
