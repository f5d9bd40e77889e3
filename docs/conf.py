"""Sphinx configuration of the documentation site (see docs/README.md).

Built in CI with warnings as errors: ``python -m sphinx -W --keep-going -b html docs OUT``.
"""

from __future__ import annotations

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(DOCS, "_ext"))

import sqlite_session_safe  # noqa: E402  (after the path change above)

project = "sqlite-session-safe"
author = "sqlite-session-safe developers"
copyright = "sqlite-session-safe developers (MIT licence)"  # noqa: A001 - Sphinx's name
release = sqlite_session_safe.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sss_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/README.md is about building the docs; protocol/examples holds the
# JSON files PROTOCOL.md refers to, not pages.
exclude_patterns = ["_build", "README.md", "protocol/examples"]

myst_enable_extensions = ["colon_fence", "deflist"]
# Headings become link targets (``[text](#anchor)``, also across pages).
myst_heading_anchors = 4

# Short names in signatures: each page says which module it documents.
add_module_names = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}
# The docstrings use Google-style sections (Args:, Attributes:, Raises:).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "alabaster"
html_title = f"sqlite-session-safe {release}"
html_theme_options = {"description": "SQLite files several processes and hosts can write safely",
                      "fixed_sidebar": True}
