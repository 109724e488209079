"""A griffe extension for the API reference: the package's docstrings are written with
Sphinx cross-reference roles (``:func:`sync_views```) and ``::`` before literal
blocks, which Markdown would show as typed. Render each role as inline code and each
``::`` as ``:``; the docstrings themselves stay as they are."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj):`~?([^`]+)`")
LITERAL_BLOCK_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


class SphinxRolesAsCode(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None:
            return
        text = ROLE.sub(r"``\1``", obj.docstring.value)
        obj.docstring.value = LITERAL_BLOCK_MARKER.sub(":", text)
