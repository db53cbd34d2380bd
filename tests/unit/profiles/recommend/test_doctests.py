"""The doctest examples of the recommendation modules and the evaluation's pure helpers."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "profiles.recommend.index",
        "profiles.recommend.blend",
        "profiles.recommend.throttle",
        "profiles.recommend.popularity",
        "profiles.core.decay",
        "profiles.pipeline.downstream",
        "stream.evaluation.recs",
        "stream.evaluation.markdown",
    ],
)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
