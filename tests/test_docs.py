"""The examples of the docstrings, of README.md and of the pages in docs/ run as doctests.

In the Markdown files, the ``>>>`` examples of a page share one namespace, in order; code
fences around them are not part of the expected output. The pages are checked where they are
beside the tests (not in the wheels' test runs, which copy tests/ alone).
"""

import doctest
import importlib
import importlib.util
import pathlib
import pkgutil
import re

import pytest

import nnexposed

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [path for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
         if path.exists()]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
FENCE = re.compile(r"^\s*(```|:::).*$", re.MULTILINE)
IMPORT = re.compile(r"^\s*(?:import\s+([\w.]+)|from\s+([\w.]+)\s+import)", re.MULTILINE)


def python_modules():
    """The package's pure-Python modules but ``__main__`` (the compiled ones are documented by
    their stubs; importing another ISA's kernels could stop this CPU with an illegal
    instruction)."""
    names = []
    for module in pkgutil.walk_packages(nnexposed.__path__, "nnexposed."):
        origin = importlib.util.find_spec(module.name).origin or ""
        if origin.endswith(".py") and not module.name.endswith(".__main__"):
            names.append(module.name)
    return ["nnexposed", *sorted(names)]


def docstring_examples():
    finder = doctest.DocTestFinder()
    params = []
    for name in python_modules():
        try:
            module = importlib.import_module(name)
        except ImportError as error:  # a module of an optional extra that is not installed
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=str(error))))
            continue
        params += [pytest.param(test, id=test.name)
                   for test in finder.find(module, name) if test.examples]
    return params


def run(test):
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} examples of {test.name} failed (output above)"


@pytest.mark.parametrize("test", docstring_examples())
def test_docstring_examples(test):
    run(test)


def test_docstrings_have_examples():
    # The collection above must have found the package's examples (it would pass on none).
    assert {"nnexposed", "nnexposed._show_versions.show_versions"} <= {
        param.id for param in docstring_examples()}


@pytest.mark.parametrize("page", [path for path in PAGES if ">>> " in path.read_text()],
                         ids=lambda path: str(path.relative_to(ROOT)))
def test_page_examples(page):
    text = FENCE.sub("", page.read_text())
    test = doctest.DocTestParser().get_doctest(text, {}, str(page.relative_to(ROOT)),
                                               str(page), 0)
    for module in imported_modules(test):
        try:
            importlib.import_module(module)
        except ImportError as error:  # a page of an optional extra that is not installed
            pytest.skip(f"{page.name} imports {module}: {error}")
    run(test)


def imported_modules(test):
    """The modules the examples of a doctest import (``import a.b``, ``from a.b import c``)."""
    modules = []
    for example in test.examples:
        for match in IMPORT.finditer(example.source):
            modules.append(match.group(1) or match.group(2))
    return modules
