"""Churn risk: BG/NBD purchase models, a risk score that ages with event time, population fits."""
