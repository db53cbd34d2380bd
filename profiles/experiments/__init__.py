"""Experiments: deterministic arms, a holdout, and attribution of purchases and clicks to
the recommendations a user was shown (or, in the holdout, would have been shown)."""
