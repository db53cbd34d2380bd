"""The doctest examples of the frequently-bought-together modules."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "name",
    [
        "profiles.together.session",
        "profiles.together.counts",
        "profiles.together.rules",
        "profiles.together.offline",
        "profiles.together.complements",
        "stream.cli.together",
        "profiles.redis.keys",
        "stream.evaluation.together",
    ],
)
def test_doctests(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
