"""Settings of the package, read on every use so that ``override_settings`` works.

Every ``ORM_VIEWS_*`` setting is validated twice, by the same rules
(:func:`setting_problems`): by the system checks (``manage.py check``, ids
``orm_views.E010`` and up, see ``checks.py``), and again where it is read:
:func:`get_settings` and the other accessors raise :class:`InvalidSettingError`,
naming the setting, its value and the values allowed, before anything touches a
database (``call_command`` skips the system checks).

The settings and the values they accept:

- ``ORM_VIEWS_SCHEMA`` (``"views"``): a schema name of lowercase letters, digits,
  ``_`` and ``$``, starting with a letter or ``_``, at most 49 bytes, not ``public``,
  ``information_schema`` nor ``pg_*``. A sync also creates schemas named after it,
  which are reserved: ``<schema>__staging`` (the new views, built before the swap),
  ``<schema>__old_<8 hex digits>`` (the previous generation, kept after it) and
  ``<schema>__data_<8 hex digits>`` (where materialized views are stored); their
  suffixes take up to 14 more bytes of PostgreSQL's 63.
- ``ORM_VIEWS_SYNC_STRATEGY`` (``"swap"``): one of :data:`STRATEGIES`.
- ``ORM_VIEWS_GRANT_SELECT_TO`` (``[]``): a list or tuple of role names, each a
  non-empty string of at most 63 bytes without NUL. A role is granted exactly as
  written (quoted): ``"PUBLIC"`` or ``"Analytics"`` are the roles of that name. Only
  ``"public"``, a name PostgreSQL reserves (no role can have it), means the ``PUBLIC``
  keyword: every role, present and future.
- ``ORM_VIEWS_SYNC_ON_MIGRATE`` (``False``): a bool.
- ``ORM_VIEWS_SYNC_LOCK_WAIT`` (``300``): seconds (an int or a float, 0 or more) a
  sync waits for another sync of the same database. ``0`` means do not wait: fail at
  once when another sync holds the lock.
- ``ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS`` (``100``): milliseconds (an int, 1 or more) the
  swap, or the drop of the previous schema, waits for each lock before it retries.
- ``ORM_VIEWS_SWAP_ATTEMPTS`` (``50``): attempts of the swap (an int, 1 or more).
- ``ORM_VIEWS_SWAP_TIMEOUT_MS`` (``1000``): milliseconds (an int, 1 or more, and at
  least ``ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS``) the swap transaction may hold its locks:
  its ``statement_timeout`` and ``idle_in_transaction_session_timeout``, so that a sync
  that stops in the middle of a swap never holds readers up for longer.
- ``ORM_VIEWS_KEEP_PREVIOUS_SECONDS`` (``3600``): seconds (an int or a float, 0 or
  more) the previous generation of the schema is kept after a swap, for the queries
  that still read it (on a hot standby above all) and for ``sync_views --rollback``.
  ``0`` drops it right after the swap.
- ``ORM_VIEWS_REFRESH_HISTORY_LIMIT`` (``100``): refreshes kept for each view, an int
  of 1 or more, or ``None`` to keep them all.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from django.conf import settings

from .exceptions import InvalidRoleNameError, InvalidSettingError

DEFAULTS: dict[str, object] = {
    "ORM_VIEWS_SCHEMA": "views",
    "ORM_VIEWS_SYNC_STRATEGY": "swap",
    "ORM_VIEWS_GRANT_SELECT_TO": [],
    "ORM_VIEWS_SYNC_ON_MIGRATE": False,
    # Seconds a sync waits for another sync of the same database to finish (0: no wait).
    "ORM_VIEWS_SYNC_LOCK_WAIT": 300.0,
    # Milliseconds a swap or a drop may wait for a reader's lock before it retries.
    "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS": 100,
    # Attempts of the swap transaction before a sync gives up (readers keep the old views).
    "ORM_VIEWS_SWAP_ATTEMPTS": 50,
    # Milliseconds the swap transaction may hold its locks, however it is stopped.
    "ORM_VIEWS_SWAP_TIMEOUT_MS": 1000,
    # Seconds the previous generation is kept after a swap (for queries still reading it,
    # on hot standbys above all, and for --rollback); 0 drops it right after the swap.
    "ORM_VIEWS_KEEP_PREVIOUS_SECONDS": 3600.0,
    # Refreshes kept in the history for each view; older ones are deleted as new ones
    # are recorded. None keeps them all.
    "ORM_VIEWS_REFRESH_HISTORY_LIMIT": 100,
}

STRATEGIES = ("swap", "recreate")

POSTGRES_MAX_IDENTIFIER_BYTES = 63
# What the sync appends to the schema name for the schemas it creates beside it.
STAGING_SCHEMA_SUFFIX = "__staging"
OLD_SCHEMA_SUFFIX = "__old_"
OLD_SCHEMA_SUFFIX_BYTES = len(OLD_SCHEMA_SUFFIX) + 8  # and 8 hex digits
MAX_SCHEMA_BYTES = POSTGRES_MAX_IDENTIFIER_BYTES - max(
    len(STAGING_SCHEMA_SUFFIX), OLD_SCHEMA_SUFFIX_BYTES
)
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
# Schemas that belong to PostgreSQL or, usually, to the project's own tables: a sync
# renames or drops its schema, so it must never be one of these.
RESERVED_SCHEMAS = frozenset({"public", "information_schema"})
# The only spelling of the PUBLIC pseudo-role: PostgreSQL refuses to create a role
# called "public", so this name cannot mean anything else.
PUBLIC_KEYWORD_ROLE = "public"


@dataclass(frozen=True)
class SettingProblem:
    """A setting whose value cannot be used: reported by a system check (``id``) and
    raised where the setting is read."""

    id: str
    setting: str
    value: object
    message: str
    hint: str

    def __str__(self) -> str:
        return f"{self.message} {self.hint}"


@dataclass(frozen=True)
class ViewSettings:
    schema: str
    sync_strategy: str
    grant_select_to: tuple[str, ...]
    sync_on_migrate: bool
    sync_lock_wait: float
    swap_lock_timeout_ms: int
    swap_attempts: int
    swap_timeout_ms: int
    keep_previous_seconds: float
    refresh_history_limit: int | None


def _setting(name: str) -> object:
    return getattr(settings, name, DEFAULTS[name])


def _is_int(value: object) -> bool:
    # bool is an int to Python; True milliseconds is a mistake, not a timeout.
    return isinstance(value, int) and not isinstance(value, bool)


def role_name_problem(role: object) -> str | None:
    """Why ``role`` cannot be granted to, or None when it can."""
    if not isinstance(role, str):
        return f"{role!r} is not a string"
    if not role:
        return "an empty name is not a role"
    if "\0" in role:
        return f"{role!r} contains a NUL character, which no role name can"
    if len(role.encode()) > POSTGRES_MAX_IDENTIFIER_BYTES:
        # PostgreSQL would cut it to 63 bytes: the grant would go to another name.
        return (
            f"{role!r} is longer than PostgreSQL's {POSTGRES_MAX_IDENTIFIER_BYTES} bytes, "
            "so no role has that name"
        )
    return None


def validate_role_names(roles: Iterable[object], *, source: str) -> tuple[str, ...]:
    """``roles`` as a tuple, once each is known to be a name a role can have; raises
    InvalidRoleNameError naming ``source`` (a setting or an option) otherwise. Call it
    before any statement runs."""
    chosen = tuple(roles)
    problems = [problem for role in chosen if (problem := role_name_problem(role))]
    if problems:
        raise InvalidRoleNameError(
            f"{source} names a role that cannot exist: {'; '.join(problems)}. Give the "
            "exact name of an existing role (at most 63 bytes, no NUL); 'public' (lowercase) "
            "means every role."
        )
    return tuple(role for role in chosen if isinstance(role, str))


def _schema_problems(value: object) -> list[SettingProblem]:
    name = "ORM_VIEWS_SCHEMA"
    hint = (
        f"Use lowercase letters, digits and underscores, at most {MAX_SCHEMA_BYTES} bytes, "
        f"starting with a letter or an underscore (the sync also uses <schema>"
        f"{STAGING_SCHEMA_SUFFIX} and <schema>{OLD_SCHEMA_SUFFIX}<8 hex digits>)."
    )
    if not isinstance(value, str) or "\0" in value:
        detail = "contains a NUL character" if isinstance(value, str) else "is not a string"
        return [
            SettingProblem(
                "orm_views.E010", name, value, f"{name} = {value!r} {detail}.", hint=hint
            )
        ]
    if not SCHEMA_NAME.fullmatch(value) or len(value.encode()) > MAX_SCHEMA_BYTES:
        return [
            SettingProblem(
                "orm_views.E010",
                name,
                value,
                f"{name} = {value!r} is not a usable schema name.",
                hint,
            )
        ]
    if value in RESERVED_SCHEMAS or value.startswith("pg_"):
        return [
            SettingProblem(
                "orm_views.E021",
                name,
                value,
                f"{name} = {value!r} names a schema that django-orm-views does not own: a sync "
                "replaces its schema as a whole.",
                "Use a schema of its own, such as 'views' (the default). PostgreSQL reserves "
                "names starting with 'pg_'.",
            )
        ]
    return []


def _strategy_problems(value: object) -> list[SettingProblem]:
    if isinstance(value, str) and value in STRATEGIES:
        return []
    name = "ORM_VIEWS_SYNC_STRATEGY"
    return [
        SettingProblem(
            "orm_views.E011",
            name,
            value,
            f"{name} = {value!r} is not a strategy.",
            f"Use one of: {', '.join(STRATEGIES)}.",
        )
    ]


def _roles_problems(value: object) -> list[SettingProblem]:
    name = "ORM_VIEWS_GRANT_SELECT_TO"
    if isinstance(value, (list, tuple)):
        problems = [problem for role in value if (problem := role_name_problem(role))]
        if not problems:
            return []
        listed = "; ".join(problems)
        detail = f"is not a list of role names. {listed[0].upper()}{listed[1:]}."
    else:
        detail = "is not a list of role names."
    hint = 'Use a list of strings, such as ["analytics"], or [] to grant nothing.'
    if isinstance(value, str):
        hint = f"Use a list: [{value!r}] grants SELECT to that one role."
    return [SettingProblem("orm_views.E025", name, value, f"{name} = {value!r} {detail}", hint)]


def _bool_problems(name: str, id: str) -> Callable[[object], list[SettingProblem]]:
    def problems(value: object) -> list[SettingProblem]:
        if isinstance(value, bool):
            return []
        return [
            SettingProblem(
                id, name, value, f"{name} = {value!r} is not a boolean.", "Use True or False."
            )
        ]

    return problems


def _positive_int_problems(
    name: str, id: str, unit: str
) -> Callable[[object], list[SettingProblem]]:
    def problems(value: object) -> list[SettingProblem]:
        if _is_int(value) and value >= 1:  # type: ignore[operator]
            return []
        return [
            SettingProblem(
                id,
                name,
                value,
                f"{name} = {value!r} is not a positive whole number of {unit}.",
                f"Use an int of 1 or more (default: {DEFAULTS[name]!r}).",
            )
        ]

    return problems


def _seconds_problems(name: str, id: str, hint: str) -> Callable[[object], list[SettingProblem]]:
    def problems(value: object) -> list[SettingProblem]:
        if (_is_int(value) or isinstance(value, float)) and math.isfinite(value) and value >= 0:  # type: ignore[arg-type,operator]
            return []
        return [
            SettingProblem(id, name, value, f"{name} = {value!r} is not a number of seconds.", hint)
        ]

    return problems


_lock_wait_problems = _seconds_problems(
    "ORM_VIEWS_SYNC_LOCK_WAIT",
    "orm_views.E031",
    "Use a number of seconds, 0 or more, such as 300 (the default); 0 fails at once "
    "when another sync holds the lock.",
)


def _history_limit_problems(value: object) -> list[SettingProblem]:
    if value is None or (_is_int(value) and value >= 1):  # type: ignore[operator]
        return []
    name = "ORM_VIEWS_REFRESH_HISTORY_LIMIT"
    return [
        SettingProblem(
            "orm_views.E034",
            name,
            value,
            f"{name} = {value!r} is neither None nor a positive number of refreshes.",
            "Use an int of 1 or more (the refreshes kept for each view, default 100), or None "
            "to keep them all.",
        )
    ]


VALIDATORS: dict[str, Callable[[object], list[SettingProblem]]] = {
    "ORM_VIEWS_SCHEMA": _schema_problems,
    "ORM_VIEWS_SYNC_STRATEGY": _strategy_problems,
    "ORM_VIEWS_GRANT_SELECT_TO": _roles_problems,
    "ORM_VIEWS_SYNC_ON_MIGRATE": _bool_problems("ORM_VIEWS_SYNC_ON_MIGRATE", "orm_views.E030"),
    "ORM_VIEWS_SYNC_LOCK_WAIT": _lock_wait_problems,
    "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS": _positive_int_problems(
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS", "orm_views.E032", "milliseconds"
    ),
    "ORM_VIEWS_SWAP_ATTEMPTS": _positive_int_problems(
        "ORM_VIEWS_SWAP_ATTEMPTS", "orm_views.E033", "attempts"
    ),
    "ORM_VIEWS_SWAP_TIMEOUT_MS": _positive_int_problems(
        "ORM_VIEWS_SWAP_TIMEOUT_MS", "orm_views.E035", "milliseconds"
    ),
    "ORM_VIEWS_KEEP_PREVIOUS_SECONDS": _seconds_problems(
        "ORM_VIEWS_KEEP_PREVIOUS_SECONDS",
        "orm_views.E037",
        "Use a number of seconds, 0 or more, such as 3600 (the default); 0 drops the "
        "previous generation right after each swap.",
    ),
    "ORM_VIEWS_REFRESH_HISTORY_LIMIT": _history_limit_problems,
}


def setting_problems(names: Iterable[str] | None = None) -> list[SettingProblem]:
    """Every problem of the ``ORM_VIEWS_*`` settings (or of the ones named)."""
    chosen = list(DEFAULTS if names is None else names)
    problems = [problem for name in chosen for problem in VALIDATORS[name](_setting(name))]
    timeouts = ("ORM_VIEWS_SWAP_TIMEOUT_MS", "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS")
    if set(timeouts) <= set(chosen) and not {problem.setting for problem in problems} & set(
        timeouts
    ):
        swap_timeout, lock_timeout = (_setting(name) for name in timeouts)
        if swap_timeout < lock_timeout:  # type: ignore[operator]
            problems.append(
                SettingProblem(
                    "orm_views.E036",
                    "ORM_VIEWS_SWAP_TIMEOUT_MS",
                    swap_timeout,
                    f"ORM_VIEWS_SWAP_TIMEOUT_MS = {swap_timeout!r} is shorter than "
                    f"ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS = {lock_timeout!r}: the swap would be "
                    "cancelled while it waits for a lock instead of retrying.",
                    "Make ORM_VIEWS_SWAP_TIMEOUT_MS at least ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS.",
                )
            )
    return problems


def raise_for_settings(names: Iterable[str] | None = None) -> None:
    """Raise InvalidSettingError naming every bad setting (of ``names``, or all)."""
    problems = setting_problems(names)
    if problems:
        raise InvalidSettingError("\n".join(f"{problem} ({problem.id})" for problem in problems))


def get_settings() -> ViewSettings:
    """Every setting, validated: raises InvalidSettingError naming each bad one."""
    raise_for_settings()
    # Validated above: the casts only tell mypy what the checks established.
    return ViewSettings(
        schema=cast(str, _setting("ORM_VIEWS_SCHEMA")),
        sync_strategy=cast(str, _setting("ORM_VIEWS_SYNC_STRATEGY")),
        grant_select_to=tuple(cast("list[str]", _setting("ORM_VIEWS_GRANT_SELECT_TO"))),
        sync_on_migrate=cast(bool, _setting("ORM_VIEWS_SYNC_ON_MIGRATE")),
        sync_lock_wait=float(cast(float, _setting("ORM_VIEWS_SYNC_LOCK_WAIT"))),
        swap_lock_timeout_ms=cast(int, _setting("ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS")),
        swap_attempts=cast(int, _setting("ORM_VIEWS_SWAP_ATTEMPTS")),
        swap_timeout_ms=cast(int, _setting("ORM_VIEWS_SWAP_TIMEOUT_MS")),
        keep_previous_seconds=float(cast(float, _setting("ORM_VIEWS_KEEP_PREVIOUS_SECONDS"))),
        refresh_history_limit=cast("int | None", _setting("ORM_VIEWS_REFRESH_HISTORY_LIMIT")),
    )


def schema_name() -> str:
    """``ORM_VIEWS_SCHEMA``, with every setting validated (see :func:`get_settings`)."""
    return get_settings().schema


def declared_schema() -> str:
    """``ORM_VIEWS_SCHEMA`` as written, not validated: only for the readable views'
    ``db_table``, set while the apps load, when an error would surface as a failed import
    of the user's ``postgres_views`` module. The system checks report a bad value, and
    every sync and refresh refuses it."""
    value = _setting("ORM_VIEWS_SCHEMA")
    return value if isinstance(value, str) else str(value)


def refresh_history_limit() -> int | None:
    """``ORM_VIEWS_REFRESH_HISTORY_LIMIT``: refreshes kept for each view (None: all)."""
    return get_settings().refresh_history_limit
