"""Settings of the package, read on every use so that ``override_settings`` works."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings

DEFAULTS: dict[str, object] = {
    "ORM_VIEWS_SCHEMA": "views",
    "ORM_VIEWS_SYNC_STRATEGY": "swap",
    "ORM_VIEWS_GRANT_SELECT_TO": [],
    "ORM_VIEWS_SYNC_ON_MIGRATE": False,
    # Seconds a sync waits for another sync of the same database to finish.
    "ORM_VIEWS_SYNC_LOCK_WAIT": 300.0,
    # Milliseconds a swap or a drop may wait for a reader's lock before it retries.
    "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS": 100,
    # Attempts of the swap transaction before a sync gives up (readers keep the old views).
    "ORM_VIEWS_SWAP_ATTEMPTS": 50,
    # Refreshes kept in the history for each view; older ones are deleted as new ones
    # are recorded. None keeps them all.
    "ORM_VIEWS_REFRESH_HISTORY_LIMIT": 100,
}

STRATEGIES = ("swap", "recreate")


@dataclass(frozen=True)
class ViewSettings:
    schema: str
    sync_strategy: str
    grant_select_to: tuple[str, ...]
    sync_on_migrate: bool
    sync_lock_wait: float
    swap_lock_timeout_ms: int
    swap_attempts: int


def _setting(name: str) -> object:
    return getattr(settings, name, DEFAULTS[name])


def get_settings() -> ViewSettings:
    roles = _setting("ORM_VIEWS_GRANT_SELECT_TO")
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, Sequence):
        roles = []
    return ViewSettings(
        schema=str(_setting("ORM_VIEWS_SCHEMA")),
        sync_strategy=str(_setting("ORM_VIEWS_SYNC_STRATEGY")),
        grant_select_to=tuple(str(role) for role in roles),
        sync_on_migrate=bool(_setting("ORM_VIEWS_SYNC_ON_MIGRATE")),
        sync_lock_wait=float(_setting("ORM_VIEWS_SYNC_LOCK_WAIT")),  # type: ignore[arg-type]
        swap_lock_timeout_ms=int(_setting("ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS")),  # type: ignore[call-overload]
        swap_attempts=int(_setting("ORM_VIEWS_SWAP_ATTEMPTS")),  # type: ignore[call-overload]
    )


def schema_name() -> str:
    return get_settings().schema


def refresh_history_limit() -> int | None:
    """``ORM_VIEWS_REFRESH_HISTORY_LIMIT``: refreshes kept for each view (None: all)."""
    limit = _setting("ORM_VIEWS_REFRESH_HISTORY_LIMIT")
    return None if limit is None else max(1, int(limit))  # type: ignore[call-overload]
