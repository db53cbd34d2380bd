"""The evaluation command: its AUC, its section of EVALUATION.md, a small end-to-end run."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.evaluation.churn import SECTION, auc, main
from stream.evaluation.markdown import replace_section


def brute_force_auc(scores: list[float], labels: list[bool]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5).map(float), st.booleans()), min_size=2, max_size=40))
def test_auc_is_the_pairwise_win_rate_with_ties_half(pairs: list[tuple[float, bool]]) -> None:
    scores = [s for s, _ in pairs]
    labels = [y for _, y in pairs]
    if all(labels) or not any(labels):
        with pytest.raises(ValueError):
            auc(scores, labels)
        return
    assert auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels))


def test_auc_agrees_with_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    labels = rng.random(500) < 0.3
    scores = np.round(rng.random(500) + labels * 0.3, 2)
    assert auc(scores, labels) == pytest.approx(metrics.roc_auc_score(labels, scores))


def test_replace_section_keeps_the_other_sections() -> None:
    doc = f"# Evaluation\n\n## Segments\nkeep me\n\n{SECTION}\nold\nold\n\n## Later\nalso\n"
    out = replace_section(doc, SECTION, f"{SECTION}\n\nnew\n")
    assert out == f"# Evaluation\n\n## Segments\nkeep me\n\n{SECTION}\n\nnew\n\n## Later\nalso\n"
    assert replace_section(out, SECTION, f"{SECTION}\n\nnew\n") == out
    appended = replace_section("# Evaluation\n\n## Segments\nkeep me\n", SECTION, f"{SECTION}\nx\n")
    assert appended == f"# Evaluation\n\n## Segments\nkeep me\n\n{SECTION}\nx\n"


def test_small_run_writes_only_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "EVALUATION.md"
    target.write_text("# Evaluation\n\n## Other (issue 4)\n\nuntouched\n", encoding="utf-8")
    argv = ["--users", "150", "--days", "40", "--split-day", "30", "--seed", "3"]
    assert main([*argv, "--write", "--evaluation-file", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert text.startswith("# Evaluation\n\n## Other (issue 4)\n\nuntouched\n\n" + SECTION)
    assert "**MBG/NBD + engagement (shipped)**" in text
    assert "recency baseline" in text
    assert text.count(SECTION) == 1
    printed = capsys.readouterr().out
    assert SECTION in printed
