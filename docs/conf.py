"""Sphinx configuration of the nnexposed documentation (MyST Markdown pages, numpydoc API).

    pip install ".[docs]" && sphinx-build -W -b html docs docs/_build/html
"""

import nnexposed

project = "nnexposed"
author = "nnexposed developers"
copyright = "nnexposed developers"
release = nnexposed.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # autosummary writes .rst
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"nnexposed {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
