"""The one error type that means "the surroundings failed, not the input".

The worker retries a batch that failed with an :class:`Outage` until the outage is over, and
treats every other exception as a fault of some event (split the batch by user, dead-letter
the users that still fail). So an adapter that talks to the outside world (Redis, Kafka, a GPU)
converts exactly the errors that a retry can cure into an ``Outage``; a deterministic error (a
bug, a ``NotImplementedError``, a shape mismatch, a ``RecursionError``) must not be one, or it
would stall its partition for ever.
"""

from __future__ import annotations


class Outage(Exception):
    """A dependency is unreachable, overloaded or restarting: retry the same work later."""

    #: What failed, for logs and the ``rtp_outages_total{dependency}`` metric.
    dependency: str = "unknown"


class DeviceOutage(Outage):
    """The accelerator is out of memory (a full, shared GPU); the batch itself is fine."""

    dependency = "gpu"


class Contention(Outage):
    """Writers kept conflicting on the same users (e.g. during a rebalance): try again."""

    dependency = "store"
