"""The examples in the package's docstrings run, and say what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import spotpatch


def test_every_docstring_example_runs():
    ran, failures = 0, []
    for info in pkgutil.walk_packages(spotpatch.__path__, "spotpatch."):
        if info.name.endswith("__main__"):  # runs the command line when imported
            continue
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=False)
        ran += result.attempted
        if result.failed:
            failures.append(f"{info.name}: {result.failed} of {result.attempted} failed")
    assert not failures, failures
    assert ran >= 30  # the examples that run (the others need a study or data: +SKIP)
