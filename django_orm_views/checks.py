"""System checks (``manage.py check``) for the declared views and the settings."""

from __future__ import annotations

import re
from typing import Any

from django.core import checks

from .conf import STRATEGIES, get_settings
from .registry import find_problems

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")
# The staging and old schemas add up to 13 bytes to the schema name.
MAX_SCHEMA_BYTES = 63 - 13


def check_views(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return [
        checks.Error(problem.message, hint=problem.hint or None, obj=problem.view, id=problem.id)
        for problem in find_problems()
    ]


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    errors: list[checks.CheckMessage] = []
    settings = get_settings()
    if not SCHEMA_NAME.match(settings.schema) or len(settings.schema.encode()) > MAX_SCHEMA_BYTES:
        errors.append(
            checks.Error(
                f"ORM_VIEWS_SCHEMA = {settings.schema!r} is not a usable schema name.",
                hint=f"Use lowercase letters, digits and underscores, at most {MAX_SCHEMA_BYTES} "
                "bytes, starting with a letter or an underscore.",
                id="orm_views.E010",
            )
        )
    if settings.sync_strategy not in STRATEGIES:
        errors.append(
            checks.Error(
                f"ORM_VIEWS_SYNC_STRATEGY = {settings.sync_strategy!r} is not a strategy.",
                hint=f"Use one of: {', '.join(STRATEGIES)}.",
                id="orm_views.E011",
            )
        )
    return errors
