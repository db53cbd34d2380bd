"""Evaluate customer value on the CDNOW purchase log: does expected value rank customers by
what they spend next?

``python -m stream.evaluation.value [--log cdnow|generator|FILE] [--calibration-end D] [--write]``

``--log generator`` runs the same evaluation on the purchases of generated traffic
(:class:`~stream.simulation.generator.TrafficGenerator`, seed 7, 3,000 users over 360 days),
the calibration end at three quarters of it; ``--write`` then replaces the ``## Customer
value on generated traffic (issue 19)`` section.

1. Read the log (:func:`stream.evaluation.churn_log.read_log`: one purchase per customer and
   day, as in the CDNOW literature) and build every customer's profile fields from the
   purchases before the calibration end.
2. Fit the MBG/NBD (:func:`profiles.churn.population.fit_population`) and the value model
   (:func:`profiles.value.population.fit_value`: Gamma-Gamma and RFM cuts) on them, as the
   worker's refit does, and score every customer with the worker's scorer as of that day.
3. Compare each score's ranking of customers with their actual spend in the holdout (the
   rest of the log): Spearman's rank correlation and the share of holdout revenue of the
   top 10 % of customers by score, against plain historical spend, recency × frequency (the
   product of the R and F scores) and BG/NBD expected purchases alone.

Also checks the Gamma-Gamma fitter on the published CDNOW summary (Fader, Hardie & Lee 2005:
``p = 6.25, q = 3.74, v = 15.45``). ``--write`` replaces the ``## Customer value on real
purchases (issue 19)`` section of ``EVALUATION.md``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import stats

from profiles.churn.features import DAY_MS
from profiles.churn.population import fit_population
from profiles.core.profile import Profile
from profiles.value import gammagamma
from profiles.value.population import fit_value, measures
from profiles.value.rfm import TIER_NAMES, score
from profiles.value.scorer import ValueScorer
from stream.evaluation.churn_log import CDNOW_CALIBRATION_END, Purchase, cdnow_path, read_log
from stream.evaluation.markdown import write_section

SECTION = "## Customer value on real purchases (issue 19)"
GENERATED_SECTION = "## Customer value on generated traffic (issue 19)"
PUBLISHED = {"p": 6.25, "q": 3.74, "v": 15.45}
FloatArray = npt.NDArray[np.float64]
_EPOCH = dt.date(1970, 1, 1).toordinal()


def profiles_before(purchases: list[Purchase], end_day: int) -> dict[str, Profile]:
    """The value-relevant profile fields of every customer from the purchases before ``end_day``
    (what :func:`profiles.core.profile.apply` keeps for purchases: orders, cents, times)."""
    out: dict[str, Profile] = {}
    for p in purchases:
        if p.day >= end_day:
            continue
        prof = out.get(p.customer)
        ts = p.day * DAY_MS
        if prof is None:
            prof = out[p.customer] = Profile(p.customer, first_ts=ts, first_purchase_ts=ts)
        prof.orders += 1
        prof.spend_cents["USD"] = prof.spend_cents.get("USD", 0) + round(p.amount * 100)
        prof.last_purchase_ts = prof.last_ts = ts
    return out


def top_share(scores: FloatArray, actual: FloatArray, ids: list[str], share: float = 0.1) -> float:
    """The share of ``actual``'s total taken by the top ``share`` of customers by ``scores``
    (ties broken by a hash of the id, so a tied score gets no help from the data's order)."""
    tiebreak = np.array(
        [int(hashlib.blake2b(i.encode(), digest_size=4).hexdigest(), 16) for i in ids]
    )
    order = np.lexsort((tiebreak, -scores))
    k = max(1, round(len(scores) * share))
    total = float(actual.sum())
    return float(actual[order[:k]].sum()) / total if total > 0 else float("nan")


def published_check() -> tuple[gammagamma.GammaGammaParams, int]:
    """The fitter on the published CDNOW summary (``x``, ``zbar``) that ``lifetimes`` ships."""
    path = cdnow_path().with_name("cdnow_customers_summary_with_transactions.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    x = np.array([float(r["x"]) for r in rows])
    m = np.array([float(r["zbar"]) for r in rows])
    return gammagamma.fit(x, m), int((x > 0).sum())


def evaluate(log: Path, end: dt.date, source: str = "cdnow") -> str:
    """The report; ``source`` is "cdnow" (the real log), "generated" or any other file."""
    started = time.perf_counter()
    with log.open() as f:
        purchases = read_log(f)
    end_day = end.toordinal() - _EPOCH
    last_day = max(p.day for p in purchases)
    holdout_days = last_day + 1 - end_day
    profiles = profiles_before(purchases, end_day)
    ids = sorted(profiles)
    end_ms = end_day * DAY_MS
    later: dict[str, float] = defaultdict(float)
    later90: dict[str, float] = defaultdict(float)
    for p in purchases:
        if p.day >= end_day and p.customer in profiles:
            later[p.customer] += p.amount
            if p.day < end_day + 90:
                later90[p.customer] += p.amount
    actual = np.array([later[i] for i in ids])
    actual90 = np.array([later90[i] for i in ids])

    population = [profiles[i] for i in ids]
    mbg = fit_population(population, end_ms)
    if mbg is None:
        raise ValueError("too few customers to fit the MBG/NBD")
    fit = fit_value(population, end_ms)
    if fit.gg is None or fit.cuts is None:
        raise ValueError("too few customers to fit the value model")
    scorer = ValueScorer((90.0, float(holdout_days)), 0.1, bgnbd=lambda: mbg)
    scorer.fit = fit
    h = f"{float(holdout_days):g}"
    states = [scorer.state(profiles[i], end_ms) for i in ids]
    value_h = np.array([s["expected"][h]["value"] if s else 0.0 for s in states])
    value_90 = np.array([s["expected"]["90"]["value"] if s else 0.0 for s in states])
    purchases_h = np.array([s["expected"][h]["purchases"] if s else 0.0 for s in states])
    own_mean = np.array([s["avg_order_value"] if s else 0.0 for s in states])
    spend = np.array([profiles[i].spend_cents.get("USD", 0) / 100 for i in ids])
    rf = []
    for i in ids:
        found = measures(profiles[i], end_ms)
        assert found is not None
        r_days, orders, _ = found
        neg = [-c for c in reversed(fit.cuts.recency)]
        rf.append(score(-r_days, neg) * score(orders, fit.cuts.frequency))
    rf_score = np.array(rf, dtype=np.float64)

    candidates: list[tuple[str, FloatArray, FloatArray]] = [
        (f"expected value, {holdout_days} d (MBG/NBD × Gamma-Gamma)", value_h, actual),
        (
            "expected purchases × own mean order value (no Gamma-Gamma)",
            purchases_h * own_mean,
            actual,
        ),
        (f"expected purchases, {holdout_days} d (MBG/NBD alone)", purchases_h, actual),
        ("historical spend (baseline)", spend, actual),
        ("recency × frequency scores (baseline)", rf_score, actual),
    ]
    rows = []
    for name, s, y in candidates:
        rho = float(stats.spearmanr(s, y).statistic)
        rows.append((name, rho, top_share(s, y, ids)))
    rows90 = []
    for name, s in [
        ("expected value, 90 d", value_90),
        ("historical spend (baseline)", spend),
        ("recency × frequency scores (baseline)", rf_score),
    ]:
        rows90.append(
            (name, float(stats.spearmanr(s, actual90).statistic), top_share(s, actual90, ids))
        )

    # Buyers only: the ranking among those who spend anything in the holdout.
    buyers = actual > 0
    rho_buyers = {
        name: float(stats.spearmanr(s[buyers], y[buyers]).statistic) for name, s, y in candidates
    }
    repeat = np.array([p.orders >= 2 for p in population])
    aov = np.array([p.spend_cents.get("USD", 0) / 100 / p.orders for p in population])
    indep = float(
        stats.pearsonr(np.array([p.orders for p in population])[repeat], aov[repeat]).statistic
    )
    pub, pub_n = published_check()

    tiers: dict[str, list[float]] = {t: [] for t in TIER_NAMES}
    for state, y in zip(states, actual, strict=True):
        if state is not None and state["tier"] is not None:
            tiers[state["tier"]].append(float(y))
    total_pred = float(value_h.sum())
    total_actual = float(actual.sum())
    elapsed = time.perf_counter() - started

    what = {
        "cdnow": ("", "CDNOW log shipped by `lifetimes`"),
        "generated": (
            " --log generator",
            "Purchases of generated traffic (`TrafficGenerator`, seed 7, 3,000 users, 360 days; "
            "our own model of shoppers, so it flatters us)",
        ),
    }.get(source, (f" --log {log.name}", f"Log `{log.name}`"))
    lines = [
        GENERATED_SECTION if source == "generated" else SECTION,
        "",
        f"`python -m stream.evaluation.value{what[0]} --write` (run "
        f"{dt.date.today().isoformat()}, {elapsed:.0f} s). {what[1]}: {len(ids):,} customers "
        "who bought "
        f"before {end.isoformat()} (calibration), holdout {holdout_days} days to the end of the "
        f"log; models fitted on the calibration period as the worker's refit does, every "
        f"customer scored as of the calibration end with the worker's scorer. Holdout revenue "
        f"${total_actual:,.0f} from {int(buyers.sum()):,} customers.",
        "",
        "**Gamma-Gamma fitter on the published CDNOW summary** (1/10 sample, "
        f"{pub_n} repeat buyers): p = {pub.p:.3f}, q = {pub.q:.3f}, v = {pub.v:.3f}; published "
        f"p = {PUBLISHED['p']}, q = {PUBLISHED['q']}, v = {PUBLISHED['v']} (differences "
        + ", ".join(f"{abs(getattr(pub, k) / w - 1) * 100:.2f} %" for k, w in PUBLISHED.items())
        + ").",
        "",
        f"**Fits on the full log's calibration period**: MBG/NBD r = {mbg.r:.3f}, "
        f"alpha = {mbg.alpha:.2f} days, a = {mbg.a:.3f}, b = {mbg.b:.3f}; Gamma-Gamma on "
        f"{fit.repeat_buyers:,} repeat buyers (mean over *all* their orders, as the profile "
        f"keeps totals) p = {fit.gg.p:.3f}, q = {fit.gg.q:.3f}, v = {fit.gg.v:.3f} (population "
        f"mean ${fit.gg.population_mean:.2f} per order). Correlation of orders and mean order "
        f"value among repeat buyers: {indep:+.3f} (the model assumes independence).",
        "",
        f"**Ranking by holdout spend** ({holdout_days} days; all {len(ids):,} customers, "
        "most of whom spend nothing, and among the holdout buyers only):",
        "",
        "| score | Spearman ρ | ρ among holdout buyers | top-decile share of holdout revenue |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rho, share in rows:
        lines.append(f"| {name} | {rho:.3f} | {rho_buyers[name]:.3f} | {share * 100:.1f} % |")
    lines += [
        "",
        "First 90 days of the holdout:",
        "",
        "| score | Spearman ρ | top-decile share |",
        "| --- | ---: | ---: |",
    ]
    for name, rho, share in rows90:
        lines.append(f"| {name} | {rho:.3f} | {share * 100:.1f} % |")
    lines += [
        "",
        f"Total expected {holdout_days}-day value ${total_pred:,.0f} against "
        f"${total_actual:,.0f} spent ({(total_pred / total_actual - 1) * 100:+.1f} %).",
        "",
        "**Tiers at the calibration end** (RFM cuts from the same customers):",
        "",
        "| tier | customers | mean holdout spend | share of holdout revenue |",
        "| --- | ---: | ---: | ---: |",
    ]
    for tier, ys in tiers.items():
        n = len(ys)
        mean = sum(ys) / n if n else 0.0
        lines.append(f"| `{tier}` | {n:,} | ${mean:.2f} | {sum(ys) / total_actual * 100:.1f} % |")
    best = max(rows, key=lambda r: r[1])
    best_share = max(rows, key=lambda r: r[2])
    text = reading(rows, best, best_share)
    buyers_best = max(rho_buyers.items(), key=lambda kv: kv[1])
    text += (
        f" Among the customers who buy in the holdout, {buyers_best[0]} ranks best "
        f"(ρ {buyers_best[1]:.3f}): how much a returning customer spends follows what they "
        "spent before, which the Gamma-Gamma shrinks toward the mean."
    )
    empty = [t for t, ys in tiers.items() if not ys]
    if empty:
        text += (
            f" Empty tiers: {', '.join(empty)}. Orders are heavily tied (most customers bought "
            f"once; frequency cuts {list(fit.cuts.frequency)}), so F jumps from 1 to "
            f"{score(2, fit.cuts.frequency)} at the second order, and no customer has the scores "
            "those tiers need."
        )
    lines += ["", "**Reading.** " + text]
    return "\n".join(lines) + "\n"


def reading(
    rows: list[tuple[str, float, float]],
    best: tuple[str, float, float],
    best_share: tuple[str, float, float],
) -> str:
    value, spend, rf = rows[0], rows[3], rows[4]
    parts = [
        f"Expected value's Spearman ρ is {value[1]:.3f} against {spend[1]:.3f} for historical "
        f"spend and {rf[1]:.3f} for recency × frequency; its top decile takes "
        f"{value[2] * 100:.1f} % of holdout revenue against {spend[2] * 100:.1f} % and "
        f"{rf[2] * 100:.1f} %."
    ]
    if best[0] != value[0]:
        parts.append(f"The best rank correlation is {best[0]}'s ({best[1]:.3f}).")
    if best_share[0] != value[0]:
        parts.append(f"The best top decile is {best_share[0]}'s ({best_share[2] * 100:.1f} %).")
    return " ".join(parts)


def generated_log(folder: Path, users: int = 3000, days: float = 360.0) -> tuple[Path, dt.date]:
    """The generator's purchases as a CSV purchase log, and the calibration end at 3/4 of it."""
    from stream.simulation.generator import TrafficConfig, TrafficGenerator

    gen = TrafficGenerator(TrafficConfig(seed=7, users=users))
    path = folder / "generated-purchases.csv"
    first = last = None
    with path.open("w") as out:
        out.write("customer,time,amount\n")
        for event in gen.history(days):
            if event["type"] != "purchase":
                continue
            ts = int(event["ts"])
            first, last = first or ts, ts
            out.write(f"{event['user_id']},{ts},{float(event['amount'])}\n")
    if first is None or last is None:
        raise ValueError("the generator produced no purchases")
    end_ms = first + (last - first) * 3 // 4
    return path, dt.date.fromordinal(_EPOCH + end_ms // DAY_MS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument(
        "--log", default="cdnow", help="'cdnow', 'generator' or a CSV/JSONL purchase log"
    )
    parser.add_argument(
        "--calibration-end",
        type=dt.date.fromisoformat,
        default=CDNOW_CALIBRATION_END,
        help="first day of the holdout (YYYY-MM-DD)",
    )
    parser.add_argument("--write", action="store_true", help="write the section to the file")
    parser.add_argument("--evaluation-file", type=Path, default=Path("EVALUATION.md"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    section = GENERATED_SECTION if args.log == "generator" else SECTION
    try:
        if args.log == "generator":
            with tempfile.TemporaryDirectory() as folder:
                path, end = generated_log(Path(folder))
                report = evaluate(path, end, source="generated")
        else:
            path = cdnow_path() if args.log == "cdnow" else Path(args.log)
            report = evaluate(path, args.calibration_end)
    except (OSError, ValueError) as exc:
        print(f"value evaluation: {exc}", file=sys.stderr)
        return 2
    print(report)
    if args.write:
        write_section(args.evaluation_file, section, report, title="Evaluation")
        print(f"wrote {section!r} to {args.evaluation_file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
