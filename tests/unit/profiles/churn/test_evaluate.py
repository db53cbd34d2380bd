"""The evaluation command: its AUC, its section of EVALUATION.md, a small end-to-end run."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.evaluation.churn import SECTION, SECTION_REAL, auc, main
from stream.evaluation.churn_log import average_precision, ece, read_log
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
    assert "**P(no purchase in 30 d), MBG/NBD (shipped, uncalibrated)**" in text
    assert "previous shipped score" in text
    assert "recency baseline" in text
    assert text.count(SECTION) == 1
    printed = capsys.readouterr().out
    assert SECTION in printed


def _log(path: Path, customers: int = 600, seed: int = 0) -> None:
    """A purchase log of steady buyers and buyers who stop, as CSV."""
    rng = np.random.default_rng(seed)
    lines = ["customer,time,amount"]
    for c in range(customers):
        start = int(rng.integers(0, 60))
        rate = rng.gamma(1.0, 1 / 20.0)
        stop = start + rng.exponential(150.0)
        day = float(start)
        while day < min(stop, 360):
            lines.append(f"c{c},{np.datetime64('2024-01-01') + int(day)},{rng.uniform(5, 50):.2f}")
            day += rng.exponential(1.0 / rate) + 1
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_backtest_on_a_purchase_log_writes_its_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "purchases.csv"
    _log(log)
    target = tmp_path / "EVALUATION.md"
    plot = tmp_path / "calibration.png"
    argv = ["--log", str(log), "--calibration-end", "2024-07-01", "--horizons", "30", "90"]
    argv += ["--no-progress", "--plot", str(plot), "--write", "--evaluation-file", str(target)]
    assert main(argv) == 0
    text = target.read_text(encoding="utf-8")
    assert text.count(SECTION_REAL) == 1
    for row in ("shipped", "recency alone", "BG/NBD expected purchases", "previous shipped"):
        assert row in text
    assert "**H = 30 days**" in text and "**H = 90 days**" in text
    assert "| decile |" in text and "| high |" in text
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert SECTION_REAL in capsys.readouterr().out


def test_backtest_refuses_a_bad_log(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("who,when\na,b\n", encoding="utf-8")
    assert main(["--log", str(bad), "--no-progress"]) == 2
    assert main(["--log", str(tmp_path / "missing.csv"), "--no-progress"]) == 2


def test_read_log_formats_agree() -> None:
    csv_rows = read_log(["customer,time,amount", "a,2024-01-01,5", "a,2024-01-01T10:00:00,7"])
    jsonl = read_log(['{"customer": "a", "time": "2024-01-01", "amount": 12}'])
    cdnow = read_log(["customer_id date number_of_cds dollar_value", "a 20240101 1 12.0"])
    assert csv_rows == jsonl == cdnow and len(csv_rows) == 1


def test_average_precision_and_ece_agree_with_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    p = rng.random(2000)
    y = rng.random(2000) < p
    assert average_precision(p, y) == pytest.approx(metrics.average_precision_score(y, p))
    assert ece(p, y) < 0.05  # drawn from p: calibrated
    assert ece(np.clip(p + 0.3, 0, 1), y) > 0.15


def test_the_stream_churn_backtest_command_reports_and_plots(tmp_path: Path) -> None:
    import subprocess
    import sys

    log, plot = tmp_path / "purchases.csv", tmp_path / "calibration.png"
    _log(log)
    command = [sys.executable, "-m", "stream", "churn", "backtest", str(log)]
    command += ["--calibration-end", "2024-07-01", "--holdout-days", "30", "--plot", str(plot)]
    root = Path(__file__).resolve().parents[4]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert SECTION_REAL in done.stdout and "**H = 30 days**" in done.stdout
    assert "| decile |" in done.stdout and "lift @ top 10%" in done.stdout
    assert plot.read_bytes()[:4] == b"\x89PNG"
    bad = subprocess.run(
        [*command[:5], str(tmp_path / "missing.csv")], cwd=root, capture_output=True, timeout=600
    )
    assert bad.returncode != 0
