"""The examples in the segmentation modules' docstrings run and pass."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "profiles.segments.features",
    "profiles.segments.kmeans",
    "profiles.segments.matching",
    "profiles.segments.hysteresis",
    "profiles.segments.summary",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
