"""Every ORM_VIEWS_* setting is validated by a system check, with an id and a hint, and
again where it is read, so that a command run through call_command (which skips the
checks) fails with a message naming the setting before it touches a database."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_orm_views.conf import (
    get_settings,
    refresh_history_limit,
    schema_name,
    validate_role_names,
)
from django_orm_views.exceptions import InvalidRoleNameError, InvalidSettingError, ViewError

from .utils import manage_py, run_command

# setting, bad value, check id, what the message says of it
INVALID = [
    (
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS",
        0,
        "E032",
        "is not a positive whole number of milliseconds.",
    ),
    (
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS",
        -1,
        "E032",
        "is not a positive whole number of milliseconds.",
    ),
    (
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS",
        "100",
        "E032",
        "is not a positive whole number of milliseconds.",
    ),
    (
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS",
        True,
        "E032",
        "is not a positive whole number of milliseconds.",
    ),
    (
        "ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS",
        2.5,
        "E032",
        "is not a positive whole number of milliseconds.",
    ),
    ("ORM_VIEWS_SWAP_ATTEMPTS", 0, "E033", "is not a positive whole number of attempts."),
    ("ORM_VIEWS_SWAP_TIMEOUT_MS", 0, "E035", "is not a positive whole number of milliseconds."),
    (
        "ORM_VIEWS_SWAP_TIMEOUT_MS",
        50,
        "E036",
        "is shorter than ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS = 100",
    ),
    ("ORM_VIEWS_SYNC_LOCK_WAIT", "5 minutes", "E031", "is not a number of seconds."),
    ("ORM_VIEWS_SYNC_LOCK_WAIT", -1, "E031", "is not a number of seconds."),
    ("ORM_VIEWS_SYNC_LOCK_WAIT", float("nan"), "E031", "is not a number of seconds."),
    ("ORM_VIEWS_SYNC_LOCK_WAIT", None, "E031", "is not a number of seconds."),
    ("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", "1 hour", "E037", "is not a number of seconds."),
    ("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", -1, "E037", "is not a number of seconds."),
    ("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", float("inf"), "E037", "is not a number of seconds."),
    ("ORM_VIEWS_KEEP_PREVIOUS_SECONDS", True, "E037", "is not a number of seconds."),
    (
        "ORM_VIEWS_REFRESH_HISTORY_LIMIT",
        "all",
        "E034",
        "is neither None nor a positive number of refreshes.",
    ),
    (
        "ORM_VIEWS_REFRESH_HISTORY_LIMIT",
        0,
        "E034",
        "is neither None nor a positive number of refreshes.",
    ),
    ("ORM_VIEWS_SYNC_STRATEGY", "sideways", "E011", "is not a strategy."),
    ("ORM_VIEWS_SYNC_ON_MIGRATE", "yes", "E030", "is not a boolean."),
    ("ORM_VIEWS_SYNC_ON_MIGRATE", 1, "E030", "is not a boolean."),
    ("ORM_VIEWS_SCHEMA", "", "E010", "is not a usable schema name."),
    ("ORM_VIEWS_SCHEMA", "vie\0ws", "E010", "contains a NUL character."),
    ("ORM_VIEWS_SCHEMA", 42, "E010", "is not a string."),
    ("ORM_VIEWS_SCHEMA", "v" * 50, "E010", "is not a usable schema name."),
    ("ORM_VIEWS_SCHEMA", "public", "E021", "names a schema that django-orm-views does not own"),
    ("ORM_VIEWS_GRANT_SELECT_TO", "analytics", "E025", "is not a list of role names."),
    ("ORM_VIEWS_GRANT_SELECT_TO", ["ana\0lytics"], "E025", "contains a NUL character"),
    ("ORM_VIEWS_GRANT_SELECT_TO", ["r" * 64], "E025", "is longer than PostgreSQL's 63 bytes"),
    ("ORM_VIEWS_GRANT_SELECT_TO", [""], "E025", "An empty name is not a role."),
    ("ORM_VIEWS_GRANT_SELECT_TO", None, "E025", "is not a list of role names."),
]
IDS = [f"{setting.removeprefix('ORM_VIEWS_')}={value!r}" for setting, value, _, _ in INVALID]


@pytest.mark.parametrize(("setting", "value", "check_id", "says"), INVALID, ids=IDS)
class TestInvalidValues:
    def test_the_system_check_names_it_with_an_id_and_a_hint(
        self, setting: str, value: Any, check_id: str, says: str
    ) -> None:
        with override_settings(**{setting: value}):
            result = run_command("check")
        assert result.exit_code == 1
        reported = result.stderr.split(f"(orm_views.{check_id}) ", 1)[1]
        message, hint = reported.split("\n", 2)[:2]
        assert message.startswith(f"{setting} = {value!r} ")
        assert says in message
        assert hint.startswith("\tHINT: ")

    def test_reading_it_raises_a_configuration_error(
        self, setting: str, value: Any, check_id: str, says: str
    ) -> None:
        with override_settings(**{setting: value}), pytest.raises(InvalidSettingError) as caught:
            get_settings()
        error = caught.value
        assert isinstance(error, ImproperlyConfigured)
        assert isinstance(error, ViewError)
        assert str(error).startswith(f"{setting} = {value!r} ")
        assert says in str(error)
        assert str(error).endswith(f"(orm_views.{check_id})")

    # No django_db mark: touching a database would raise, so a clean CommandError proves
    # the command stopped before it did.
    def test_a_sync_fails_cleanly_before_touching_the_database(
        self, setting: str, value: Any, check_id: str, says: str
    ) -> None:
        with override_settings(**{setting: value}):
            result = run_command("sync_views")
        assert result.exit_code == 1
        assert result.stderr.startswith(f"CommandError: {setting} = {value!r} ")
        assert says in result.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["sync_views", "--check"],
        ["sync_views", "--dry-run"],
        ["sync_views", "--database", "warehouse"],
        ["refresh_views"],
        ["refresh_views", "shop_dailysales", "--concurrently"],
        ["list_views"],
    ],
    ids=" ".join,
)
@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("ORM_VIEWS_REFRESH_HISTORY_LIMIT", "all"),
        ("ORM_VIEWS_SYNC_LOCK_WAIT", "5 minutes"),
        ("ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS", 0),
    ],
)
def test_every_command_refuses_before_touching_the_database(
    command: list[str], setting: str, value: Any
) -> None:
    with override_settings(**{setting: value}):
        result = run_command(*command)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"CommandError: {setting} = {value!r} ")


def test_every_bad_setting_is_named_at_once() -> None:
    with (
        override_settings(ORM_VIEWS_SWAP_ATTEMPTS=0, ORM_VIEWS_REFRESH_HISTORY_LIMIT="all"),
        pytest.raises(InvalidSettingError) as caught,
    ):
        get_settings()
    assert str(caught.value).splitlines() == [
        "ORM_VIEWS_SWAP_ATTEMPTS = 0 is not a positive whole number of attempts. Use an int "
        "of 1 or more (default: 50). (orm_views.E033)",
        "ORM_VIEWS_REFRESH_HISTORY_LIMIT = 'all' is neither None nor a positive number of "
        "refreshes. Use an int of 1 or more (the refreshes kept for each view, default 100), "
        "or None to keep them all. (orm_views.E034)",
    ]


def test_the_accessors_validate_too() -> None:
    with override_settings(ORM_VIEWS_REFRESH_HISTORY_LIMIT="all"):
        with pytest.raises(InvalidSettingError, match="ORM_VIEWS_REFRESH_HISTORY_LIMIT = 'all'"):
            refresh_history_limit()
        with pytest.raises(InvalidSettingError, match="ORM_VIEWS_REFRESH_HISTORY_LIMIT = 'all'"):
            schema_name()


@pytest.mark.parametrize(
    "values",
    [
        {"ORM_VIEWS_SYNC_LOCK_WAIT": 0},
        {"ORM_VIEWS_SYNC_LOCK_WAIT": 0.5},
        {"ORM_VIEWS_KEEP_PREVIOUS_SECONDS": 0},
        {"ORM_VIEWS_KEEP_PREVIOUS_SECONDS": 86400.5},
        {"ORM_VIEWS_SWAP_LOCK_TIMEOUT_MS": 1, "ORM_VIEWS_SWAP_ATTEMPTS": 1},
        {"ORM_VIEWS_SWAP_TIMEOUT_MS": 100},
        {"ORM_VIEWS_REFRESH_HISTORY_LIMIT": None},
        {"ORM_VIEWS_REFRESH_HISTORY_LIMIT": 1},
        {"ORM_VIEWS_GRANT_SELECT_TO": ("analytics", "PUBLIC", "public", "r" * 63)},
        {"ORM_VIEWS_SCHEMA": "v" * 49},
        {"ORM_VIEWS_SCHEMA": "reporting$2"},
        {"ORM_VIEWS_SYNC_ON_MIGRATE": True},
    ],
    ids=repr,
)
def test_valid_values_pass(values: dict[str, Any]) -> None:
    with override_settings(**values):
        assert run_command("check").exit_code == 0
        get_settings()


def test_the_swap_timeout_setting() -> None:
    assert get_settings().swap_timeout_ms == 1000
    with override_settings(ORM_VIEWS_SWAP_TIMEOUT_MS=2500):
        assert get_settings().swap_timeout_ms == 2500


def test_an_unknown_setting_is_a_warning() -> None:
    with override_settings(ORM_VIEWS_GRANT_SELECT=["analytics"]):
        result = run_command("check")
    assert result.exit_code == 0
    assert (
        "?: (orm_views.W001) ORM_VIEWS_GRANT_SELECT is not a setting of django-orm-views; it "
        "has no effect.\n\tHINT: Did you mean ORM_VIEWS_GRANT_SELECT_TO? The settings are: "
        in result.stderr
    )


def test_a_bad_setting_is_not_reported_as_an_import_error() -> None:
    """test_project declares readable views, whose model is built while the apps load:
    a bad setting must reach the checks, not fail the import of postgres_views."""
    process = manage_py(
        "check",
        env={
            "DJANGO_SETTINGS_MODULE": "tests.invalid_settings",
            "ORM_VIEWS_TEST_SETTING": "ORM_VIEWS_SYNC_LOCK_WAIT",
            "ORM_VIEWS_TEST_VALUE": "'5 minutes'",
        },
    )
    assert process.returncode == 1, process.stderr
    assert "Traceback" not in process.stderr
    assert (
        "?: (orm_views.E031) ORM_VIEWS_SYNC_LOCK_WAIT = '5 minutes' is not a number of seconds."
        in process.stderr
    )


def test_role_names_from_an_option_are_validated_before_use() -> None:
    source = "--grant-select-permissions-to-user"
    assert validate_role_names(["PUBLIC", "Mixed Case", "o'brien %s"], source=source) == (
        "PUBLIC",
        "Mixed Case",
        "o'brien %s",
    )
    with pytest.raises(InvalidRoleNameError) as caught:
        validate_role_names(["analytics", "ana\0lytics", "r" * 64], source=source)
    assert isinstance(caught.value, ViewError)
    assert str(caught.value) == (
        "--grant-select-permissions-to-user names a role that cannot exist: 'ana\\x00lytics' "
        "contains a NUL character, which no role name can; '" + "r" * 64 + "' is longer than "
        "PostgreSQL's 63 bytes, so no role has that name. Give the exact name of an existing "
        "role (at most 63 bytes, no NUL); 'public' (lowercase) means every role."
    )
