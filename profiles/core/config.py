"""Settings of the profile math, a frozen slice of the worker's settings."""

from __future__ import annotations

from dataclasses import dataclass, field

#: How strongly each kind of event signals interest (the seeds rank purchase highest).
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "purchase": 5.0,
    "add_to_cart": 3.0,
    "review": 2.0,
    "click": 1.0,
    "search": 1.5,
}


@dataclass(frozen=True)
class ProfileConfig:
    """Parameters of :func:`profiles.core.profile.apply`; all times in epoch milliseconds."""

    half_life_ms: int = 30 * 86_400_000
    lateness_ms: int = 7 * 86_400_000
    top_tags: int = 50
    # Producer retries resend within seconds: 64 ids per user catch them, and keep each
    # profile write small (the whole profile is rewritten on every change).
    recent_ids: int = 64
    purchased_items: int = 200
    kind_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))

    def __hash__(self) -> int:
        return hash((self.half_life_ms, self.lateness_ms, self.top_tags, self.recent_ids))
