"""The feature interface: how a profile feature plugs into the batch updater.

A feature (vectors, segments, churn, recommendations, ...) is one package with one
class implementing :class:`Feature`. It owns some Redis hash fields of the profile
(``fields``, a :class:`Fields` codec saying how they (de)serialise),
may learn from every applied event (:meth:`Feature.learner`), and computes, for the users
a batch wrote, what to store with them, which indexes to update and which events to emit
(:meth:`Feature.compute`). All of it is pure: the store commits what the features return,
the transport sends what they emit. The base profile (counts, RFM, tags, fences, event
ids) is not a feature: every feature builds on it.

The updater runs the enabled features in the order given (later ones see what earlier
ones set: recommendations read the segment of this batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from profiles.core.profile import EventLearner, Outcome, Profile, Record

if TYPE_CHECKING:
    from profiles.pipeline.store import Erasure

#: A value written to a profile hash field (Redis stores ints and strings as their text).
FieldValue = bytes | int | str


@dataclass(frozen=True, slots=True)
class SetAdd:
    """Add ``member`` to the set named ``index`` (a logical name, see ``core/indexes.py``)."""

    index: str
    member: str


@dataclass(frozen=True, slots=True)
class SetRemove:
    index: str
    member: str


@dataclass(frozen=True, slots=True)
class ScoreSet:
    """Set ``member``'s score in the sorted set ``index``."""

    index: str
    member: str
    score: int


@dataclass(frozen=True, slots=True)
class ScoreRemove:
    index: str
    member: str


#: Index operations: all idempotent, so a replayed commit is harmless.
IndexOp = SetAdd | SetRemove | ScoreSet | ScoreRemove


@dataclass(frozen=True, slots=True)
class CountsAdd:
    """Decayed counts for the shared counter of an owner partition, fenced by source offset
    in the store (``profiles/recommend/popularity.py``): a batch-level write. ``counter``
    names the counter: item popularity, or another feature's (its own hash and fences).
    ``half_life_ms`` 0 (``popularity.NO_DECAY``): counts that do not decay, plain sums."""

    partition: int
    entries: list[tuple[str, int, int, str, float]]  # popularity.Contribution
    half_life_ms: int
    counter: str = "pop"


@dataclass(frozen=True, slots=True)
class PairsAdd:
    """Pair counts (``profiles/together/``), fenced by source offset in the store like
    :class:`CountsAdd`: one item's neighbours (``item``, sets trimmed to ``cap``), or, with
    ``item=None``, the marginals counted by owner partition ``partition``."""

    item: str | None
    partition: int
    entries: list[tuple[str, int, int, str, float]]  # together.counts.PairContribution
    half_life_ms: int
    cap: int = 0


@dataclass(frozen=True, slots=True)
class Emit:
    """One downstream event: ``role`` names the output topic (``stream/worker/topics.py``),
    ``change`` is the feature's own record of it (for metrics and tests)."""

    role: str
    kind: str
    user_id: str
    build: Callable[[int], dict[str, Any]]  # processed_at (ms) -> the event
    change: object = None


@dataclass(slots=True)
class UserResult:
    """One user's share of a batch: the base outcome, then what each feature adds."""

    profile: Profile
    erasures: list[Erasure] = field(default_factory=list)
    outcome: Outcome = field(default_factory=Outcome)
    writes: dict[str, FieldValue] = field(default_factory=dict)  # feature hash fields
    ops: list[IndexOp] = field(default_factory=list)
    emits: list[Emit] = field(default_factory=list)
    # Records for the routed topic (identity stitching's merge, forwards, cascaded erasures).
    routed: list[Record] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.profile.user_id

    @property
    def write(self) -> bool:
        """The profile changed and is written in this batch."""
        return self.outcome.applied > 0


@dataclass(slots=True)
class Batch:
    """What every feature may read about the batch being applied."""

    records: Sequence[Record]
    by_user: dict[str, list[Record]]
    items: dict[str, dict[str, Any]]  # catalog entries the batch's events name
    attempt: int = 1  # > 1: recomputing users whose commit conflicted
    # Batch-level writes (first attempt only), whatever a user's commit does.
    seen_items: list[dict[str, Any]] = field(default_factory=list)
    counts: list[CountsAdd] = field(default_factory=list)
    pairs: list[PairsAdd] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # per-batch state features share

    @property
    def as_of(self) -> int:
        """The batch's latest event time."""
        return max((int(r.event["ts"]) for r in self.records), default=0)


@dataclass(slots=True)
class Stats:
    """Per-batch counters a feature reports (summed into the batch result)."""

    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


class Fields:
    """The profile hash fields a feature owns, and how its state (de)serialises.

    Stateless: readers of profiles (the API, the CLI) decode every built-in field
    without loading the feature's models, and a disabled feature's fields stay as stored.
    """

    #: The hash fields (read on load, in this order; written by :meth:`encode`).
    names: tuple[str, ...] = ()

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        """Set the feature's state on ``profile`` from its stored fields (None: absent)."""

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        """Fields written with every write of ``profile`` (absent ones are left as stored)."""
        return {}


class Feature:
    """Base class of profile features; every hook defaults to doing nothing."""

    #: Unique name; also the key of its state in :attr:`Profile.parts`.
    name: str = ""
    #: Its hash fields; a feature that stores nothing of its own keeps the empty default.
    fields: Fields = Fields()

    async def prepare(self, batch: Batch, stats: Stats) -> None:
        """Batch-level work before users are computed (e.g. one encoder call)."""

    def attach(self, profile: Profile, stats: Stats) -> None:
        """Ready a profile taken from the cache or the store for computing."""

    def learner(self, batch: Batch) -> EventLearner | None:
        """Per-event learning on top of the base profile, or None."""
        return None

    def erased(self, before: Profile, user: UserResult) -> None:
        """The user was erased in this batch; ``before`` is the profile as it was."""

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        """Add field writes, index operations and emits to the ``users`` of the batch."""

    def indexed(self, profile: Profile) -> list[SetAdd | ScoreSet]:
        """The index entries ``profile``'s state implies (what :meth:`compute` maintains).

        Read only after a commit conflict: the store applies the conflicting attempt's index
        operations anyway (they cannot share the user's atomic write: an index is not in the
        user's hash slot), so the updater undoes those this state does not imply.
        A feature that emits index operations must say here which entries it keeps.
        """
        return []

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        """Add the feature's fields to the ``profile_updated`` event."""


def stored_fields(codecs: Sequence[Fields]) -> tuple[str, ...]:
    """Every feature hash field, in codec order (after the base ``v`` and ``d``)."""
    out: list[str] = []
    for codec in codecs:
        clash = set(codec.names) & (set(out) | {"v", "d"})
        if clash:
            raise ValueError(f"{type(codec).__name__} claims fields already taken: {clash}")
        out += codec.names
    return tuple(out)


def decode_all(codecs: Sequence[Fields], profile: Profile, values: Sequence[bytes | None]) -> None:
    """Hand each codec its share of ``values`` (read in :func:`stored_fields` order)."""
    at = 0
    for codec in codecs:
        n = len(codec.names)
        codec.decode(profile, values[at : at + n])
        at += n


def encode_all(features: Sequence[Feature], user: UserResult) -> dict[str, FieldValue]:
    """The feature fields a written user stores: every codec's, then the batch's own."""
    out: dict[str, FieldValue] = {}
    for feature in features:
        out.update(feature.fields.encode(user.profile))
    out.update(user.writes)
    return out
