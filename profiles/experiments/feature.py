"""Experiments as a profile feature: field ``xp``, the arm in recommendation events, per-arm
counters shared across users.

Runs after the recommendation feature, so it sees this batch's lists. Every user with a
counted event gets an arm (a pure function of salt and user id, :mod:`.assign`). A holdout
user's personal list is computed but not pushed. With no control (``none``) it stays in the
state as what they *would* have been shown, so conversions are measured the same way in
every arm (intention to treat); with the ``popular`` control the user is pushed, and
remembered as shown, the popularity list a cold user gets instead, marked ``control``. A
pushed list carries the arm and its ``recommendation_id``. Purchases of an item shown
within the window count as conversions, once (:mod:`.attribution`).

Per-arm counters (``users``, ``converted``, ``conversions``, ``clicks``) go into the shared
counter ``xp`` of the user's owner partition through :class:`CountsAdd`: fenced by input
offset in the store, so redelivery never counts twice. They do not decay: the counter's
half-life is ``NO_DECAY``, plain fenced sums, so the counts stay exact integers.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from profiles.core.ownership import owner
from profiles.core.profile import Profile
from profiles.experiments.assign import Arms, assign
from profiles.experiments.attribution import attribute, new_state, remember
from profiles.pipeline.feature import (
    Batch,
    CountsAdd,
    Emit,
    Feature,
    Fields,
    FieldValue,
    Stats,
    UserResult,
)
from profiles.recommend.blend import Recommendation
from profiles.recommend.feature import recommendation_event
from profiles.recommend.popularity import NO_DECAY, Contribution
from profiles.recommend.recommender import RecsChange

#: Name of the shared per-arm counters (``CountsAdd.counter``: ``rtp:xp:{<partition>}``).
COUNTER = "xp"
#: The per-arm counters, in report order.
COUNTS = ("users", "converted", "conversions", "clicks")


def count_field(experiment: str, arm: str, what: str) -> str:
    """The shared counter's field of one arm's count.

    >>> count_field("x1", "holdout", "users")
    'x1/holdout/users'
    """
    return f"{experiment}/{arm}/{what}"


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    name: str  # also the hash salt
    arms: Arms
    holdout: tuple[str, ...]  # arms that get no personal list
    window_ms: int
    control: str = "none"  # what the holdout is shown instead: "none" or "popular"


class ExperimentFields(Fields):
    names = ("xp",)

    def decode(self, profile: Profile, values: Sequence[bytes | None]) -> None:
        profile.parts["experiment"] = None if values[0] is None else orjson.loads(values[0])

    def encode(self, profile: Profile) -> dict[str, FieldValue]:
        state = profile.parts.get("experiment")
        return {} if state is None else {"xp": orjson.dumps(state)}


def with_arm(
    build: Callable[[int], dict[str, Any]], arm: str, experiment: str, control: str | None = None
) -> Any:
    def built(now_ms: int) -> dict[str, Any]:
        event = build(now_ms)
        event["experiment"] = experiment
        event["arm"] = arm
        event["recommendation_id"] = event["event_id"]
        if control is not None:
            event["control"] = control
        return event

    return built


#: The popularity lists of several users (``Recommender.popular_many``).
PopularLists = Callable[[Sequence[Profile]], Awaitable[list[list[Recommendation]]]]


class ExperimentFeature(Feature):
    name = "experiment"
    fields = ExperimentFields()

    def __init__(
        self,
        config: ExperimentConfig,
        partitions: int,
        popular: PopularLists | None = None,
        model: str = "",
    ) -> None:
        self.config = config
        self.partitions = partitions
        self.popular = popular
        self.model = model  # the encoder model id a control list's event names

    def state(self, profile: Profile, born: str) -> dict[str, Any]:
        """The user's state for this experiment (a fresh one when absent or another's)."""
        c = self.config
        state = profile.parts.get("experiment")
        if state is None or state.get("x") != c.name:
            state = new_state(c.name, assign(c.name, profile.user_id, c.arms), born)
            profile.parts["experiment"] = state
        return state

    async def compute(self, batch: Batch, users: Sequence[UserResult], stats: Stats) -> None:
        c = self.config
        out: dict[int, list[Contribution]] = defaultdict(list)
        controls: list[tuple[UserResult, dict[str, Any], Emit]] = []
        for user in users:
            if not user.outcome.counted:
                continue
            profile = user.profile
            fresh: list[str] = []
            if (profile.parts.get("experiment") or {}).get("x") != c.name:
                fresh.append("users")
            state = self.state(profile, str(user.outcome.counted[0].event["event_id"]))
            arm = state["arm"]
            entries = out[owner(user.user_id, self.partitions)]
            for r in user.outcome.counted:
                ts = int(r.event["ts"])
                found = attribute(state, r.event, c.window_ms, fresh)
                if state["born"] == r.event["event_id"]:
                    found.append("users")
                for what in found:
                    entries.append((r.source.key, r.offset, ts, count_field(c.name, arm, what), 1))
            for what in fresh:  # for metrics; the fenced counters are the exact ones
                key = f"xp/{arm}/{what}"
                stats.counts[key] = stats.counts.get(key, 0) + 1
            kept: list[Emit] = []
            for emit in user.emits:
                if emit.kind != "recommendation":
                    kept.append(emit)
                    continue
                if arm in c.holdout:
                    key = f"xp/{arm}/held"  # computed, not pushed
                    stats.counts[key] = stats.counts.get(key, 0) + 1
                    if c.control == "popular" and self.popular is not None:
                        controls.append((user, state, emit))
                        continue
                self._remember(state, emit.change, profile)
                if arm not in c.holdout:
                    kept.append(replace(emit, build=with_arm(emit.build, arm, c.name)))
            user.emits[:] = kept
        if controls:
            await self._controls(controls)
        if batch.attempt == 1:
            batch.counts += [CountsAdd(p, e, NO_DECAY, COUNTER) for p, e in out.items() if e]

    def _remember(self, state: dict[str, Any], change: Any, profile: Profile) -> None:
        """Keep the list as shown (for attribution); its id is the recommendation event's."""
        items = [r.product_id for r in getattr(change, "items", ())]
        rec_id = f"{profile.user_id}:{profile.version}:recs"
        remember(state, rec_id, int(profile.last_ts or 0), items, self.config.window_ms)

    async def _controls(self, held: Sequence[tuple[UserResult, dict[str, Any], Emit]]) -> None:
        """Holdout users under the popularity control: push the popularity list in place of
        the personal one (same event id and trigger), and attribute against it."""
        assert self.popular is not None
        c = self.config
        lists = await self.popular([user.profile for user, _, _ in held])
        for (user, state, emit), items in zip(held, lists, strict=True):
            if not items:
                continue
            profile = user.profile
            personal = emit.change
            assert isinstance(personal, RecsChange)
            change = RecsChange(profile, tuple(items), personal.trigger)
            self._remember(state, change, profile)
            build = functools.partial(recommendation_event, change, self.model)
            user.emits.append(
                replace(emit, build=with_arm(build, state["arm"], c.name, "popular"), change=change)
            )

    def describe(self, profile: Profile, event: dict[str, Any]) -> None:
        state = profile.parts.get("experiment")
        if state is not None:
            event["experiment"] = {"name": state["x"], "arm": state["arm"]}
