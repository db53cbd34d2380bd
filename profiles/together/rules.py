"""Association rules from the pair counts: ``a -> b`` with support, confidence and lift.

>>> from profiles.together.counts import PairCounts
>>> pc = PairCounts(10.0, {"phone": 4.0, "case": 3.0})
>>> [r.line() for r in rules({"phone": {"case": 3.0}}, pc, min_count=1.0, k=5)]
['phone -> case  support 0.3000  confidence 0.7500  lift 2.500  count 3.00']
"""

from __future__ import annotations

from collections.abc import Mapping

from profiles.together.counts import Pair, PairCounts, score_pairs

__all__ = ["Rule", "rules"]


class Rule(Pair):
    def line(self) -> str:
        return (
            f"{self.item} -> {self.other}  support {self.support:.4f}  "
            f"confidence {self.confidence:.4f}  lift {self.lift:.3f}  count {self.count:.2f}"
        )


def rules(
    neighbours: Mapping[str, Mapping[str, float]], counts: PairCounts, min_count: float, k: int
) -> list[Rule]:
    """The rules of every antecedent in ``neighbours`` (its decayed co-counts), best lift first."""
    out = [
        Rule(p.item, p.other, p.count, p.support, p.confidence, p.lift)
        for item, found in neighbours.items()
        for p in score_pairs(item, found, counts, min_count, k)
    ]
    out.sort(key=lambda r: (-r.lift, -r.count, r.item, r.other))
    return out
