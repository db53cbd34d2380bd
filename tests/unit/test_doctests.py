"""Every docstring example in the pure packages runs (river-style runnable documentation)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import profiles
import schemas


def _modules() -> list[str]:
    names = []
    for package in (profiles, schemas):
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}."):
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
