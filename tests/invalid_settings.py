"""test_project's settings with one setting replaced, for tests that run manage.py in a
new process: ``ORM_VIEWS_TEST_SETTING`` names the setting and ``ORM_VIEWS_TEST_VALUE``
holds its value as a Python literal."""

from __future__ import annotations

import ast
import os

from test_project.settings import *  # noqa: F403

globals()[os.environ["ORM_VIEWS_TEST_SETTING"]] = ast.literal_eval(
    os.environ["ORM_VIEWS_TEST_VALUE"]
)
