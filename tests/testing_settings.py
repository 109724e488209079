"""test_project's settings for test runs started by tests/test_testing_support.py.

``ORM_VIEWS_SYNC_ON_MIGRATE`` comes from the environment ("1" turns it on); no role is
granted, so that the runs need nothing from the server but a login.
"""

from __future__ import annotations

import os

from test_project.settings import *  # noqa: F403

ORM_VIEWS_SYNC_ON_MIGRATE = os.environ.get("ORM_VIEWS_SYNC_ON_MIGRATE") == "1"
ORM_VIEWS_GRANT_SELECT_TO = []
