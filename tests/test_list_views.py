"""list_views: every declared view and every object in the views schema, with its state,
contents and last refresh, as a table or as JSON."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.db import connection

from django_orm_views import (
    refresh_materialized_views,
    sync_views,
)
from django_orm_views.exceptions import RefreshFailedError
from django_orm_views.management.commands.list_views import COLUMNS, human_size
from test_project.shop import postgres_views as shop_views
from test_project.shop.factories import CustomerFactory, OrderLineFactory

from .utils import declare_view, run_command

MODULE = __name__


def declare(name: str, *, materialized: bool = True, **attributes: Any) -> type[Any]:
    return declare_view(name, module=MODULE, materialized=materialized, **attributes)


def table(*args: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Run ``list_views --database default``: its heading lines, its rows (cells split on
    runs of two or more spaces) by view name, and the lines after the table."""
    result = run_command("list_views", "--database", "default", *args)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines[:2]
    rows: dict[str, list[str]] = {}
    footer = []
    for line in lines[2:]:
        cells = re.split(r" {2,}", line)
        if len(cells) == len(COLUMNS):
            rows[cells[0]] = cells
        else:
            footer.append(line)
    return header, rows, footer


def as_json() -> dict[str, dict[str, Any]]:
    result = run_command("list_views", "--database", "default", "--format", "json")
    assert result.exit_code == 0, result.stderr
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


SHOP_VIEWS = [
    "shop_countryrevenue",
    "shop_customerrevenue",
    "shop_customersanitised",
    "shop_dailysales",
    "shop_internalcustomercontacts",
    "shop_ordersummary",
    "shop_ordertotals",
    "shop_paidorders",
    "shop_productsales",
]


@pytest.mark.django_db
def test_before_a_sync_every_declared_view_is_missing() -> None:
    header, rows, footer = table()
    assert header[0] == "Database 'default', schema 'views':"
    assert re.split(r" {2,}", header[1]) == [
        "NAME",
        "KIND",
        "STATE",
        "POPULATED",
        "ROWS",
        "SIZE",
        "LAST REFRESH",
        "DURATION",
        "OPTIONS",
        "GRANTEES",
    ]
    assert list(rows) == SHOP_VIEWS
    assert rows["shop_dailysales"] == [
        "shop_dailysales",
        "materialized view",
        "missing",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
    ]
    assert footer == [
        "9 view(s): 9 missing.",
        "Run `manage.py sync_views --database default` to make the database match the code.",
    ]


@pytest.mark.django_db
def test_after_a_sync_views_are_in_sync_with_rows_size_and_refreshes() -> None:
    OrderLineFactory.create_batch(3, order__status="paid")
    sync_views(database="default")

    _, rows, footer = table()

    assert footer == ["9 view(s): 9 in sync."]
    assert rows["shop_ordertotals"] == [
        "shop_ordertotals",
        "view",
        "in sync",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "analytics",
    ]
    _, kind, state, populated, row_count, size, last, duration, _, _ = rows["shop_productsales"]
    assert (kind, state, populated, row_count, last, duration) == (
        "materialized view",
        "in sync",
        "yes",
        "3",
        "never",
        "-",
    )
    assert re.fullmatch(r"\d+ (bytes|kB)", size)

    refresh_materialized_views(["shop_productsales"])
    _, rows, _ = table()
    *_, last, duration, _, _ = rows["shop_productsales"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", last)
    assert re.fullmatch(r"\d+\.\d{3}s", duration)
    assert rows["shop_dailysales"][-4:-2] == ["never", "-"]


@pytest.mark.django_db
def test_outdated_missing_and_undeclared_objects(declared_views: list[type]) -> None:
    sync_views(database="default")
    original = shop_views.OrderTotals.sql
    shop_views.OrderTotals.sql = original.replace("FROM", "FROM /* v2 */", 1)
    try:
        declare("Later", materialized=False, sql="SELECT 1 AS one")
        with connection.cursor() as cursor:
            cursor.execute('CREATE TABLE "views"."stray" (id int)')
            cursor.execute('CREATE MATERIALIZED VIEW "views"."old_totals" AS SELECT 1 AS one')

        _, rows, footer = table()
    finally:
        shop_views.OrderTotals.sql = original

    states = {name: (cells[1], cells[2]) for name, cells in rows.items()}
    assert states == {
        "later": ("view", "missing"),
        "old_totals": ("materialized view", "not declared"),
        "shop_countryrevenue": ("view", "outdated"),
        "shop_customerrevenue": ("view", "outdated"),
        "shop_customersanitised": ("view", "in sync"),
        "shop_dailysales": ("materialized view", "in sync"),
        "shop_internalcustomercontacts": ("view", "in sync"),
        "shop_ordersummary": ("view", "in sync"),
        "shop_ordertotals": ("view", "outdated"),
        "shop_paidorders": ("view", "in sync"),
        "shop_productsales": ("materialized view", "in sync"),
        "stray": ("table", "not declared"),
    }
    # One heap page; PostgreSQL 18 also writes a visibility map page as it fills a
    # materialized view (15 does not), and the size shown is the whole relation's.
    with connection.cursor() as cursor:
        cursor.execute("""SELECT pg_relation_size('"views"."old_totals"', 'vm')""")
        (visibility_map_bytes,) = cursor.fetchone()
    expected_size = {0: "8192 bytes", 8192: "16 kB"}[visibility_map_bytes]
    if connection.pg_version >= 180000:  # type: ignore[attr-defined]
        assert expected_size == "16 kB"
    assert rows["old_totals"][3:6] == ["yes", "1", expected_size]
    assert footer == [
        "12 view(s): 6 in sync, 3 outdated, 1 missing, 2 not declared.",
        "Run `manage.py sync_views --database default` to make the database match the code.",
        "Not created by django-orm-views: views.old_totals, views.stray. A sync that changes "
        "views refuses to replace the schema until they are moved elsewhere.",
    ]


@pytest.mark.django_db
def test_an_unpopulated_view_has_no_rows(declared_views: list[type]) -> None:
    declare(
        "Later",
        sql="SELECT country, count(*) AS n FROM shop_customer GROUP BY 1",
        with_data=False,
    )
    sync_views(database="default")
    _, rows, _ = table()
    assert rows["later"][2:5] == ["in sync", "no", "-"]


@pytest.mark.django_db
def test_json_for_scripts_includes_the_last_refresh_and_its_error(
    declared_views: list[type],
) -> None:
    declare(
        "Domains",
        sql="SELECT split_part(email, '@', 2) AS domain FROM shop_customer",
        pk_field="domain",
    )
    CustomerFactory.create(email="ann@example.com")
    sync_views(database="default")
    CustomerFactory.create(email="bob@example.com")
    with pytest.raises(RefreshFailedError):
        refresh_materialized_views(["domains"])

    listing = as_json()

    domains = listing["domains"]
    assert set(domains) == {
        "database",
        "name",
        "kind",
        "state",
        "declared_as",
        "populated",
        "rows",
        "size_bytes",
        "managed",
        "last_refresh",
        "options",
        "grantees",
        "depends_on",
        "reads_tables",
        "reads_columns",
        "generation",
        "stored_in",
    }
    assert (domains["database"], domains["kind"], domains["state"]) == (
        "default",
        "materialized view",
        "in sync",
    )
    assert domains["declared_as"] == f"Domains ({MODULE})"
    assert (domains["populated"], domains["rows"]) == (True, 1)
    assert domains["size_bytes"] > 0
    refresh = domains["last_refresh"]
    assert (refresh["mode"], refresh["succeeded"], refresh["rows"]) == ("concurrently", False, None)
    assert refresh["error"].startswith(
        f"Refreshing view Domains ({MODULE}) on database 'default' failed: new data for "
        'materialized view "domains" contains duplicate rows'
    )
    assert listing["shop_ordertotals"]["last_refresh"] is None
    assert listing["shop_ordertotals"]["populated"] is None


@pytest.mark.django_db
def test_a_failed_last_refresh_is_marked_in_the_table(declared_views: list[type]) -> None:
    declare(
        "Domains",
        sql="SELECT split_part(email, '@', 2) AS domain FROM shop_customer",
        pk_field="domain",
    )
    CustomerFactory.create(email="ann@example.com")
    sync_views(database="default")
    CustomerFactory.create(email="bob@example.com")
    with pytest.raises(RefreshFailedError):
        refresh_materialized_views(["domains"])
    _, rows, _ = table()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(failed\)", rows["domains"][6])


@pytest.mark.django_db
def test_without_database_every_database_with_views_is_listed() -> None:
    result = run_command("list_views")
    assert result.exit_code == 0, result.stderr
    headings = [line for line in result.stdout.splitlines() if line.startswith("Database ")]
    assert headings == [
        "Database 'default', schema 'views':",
        "Database 'warehouse', schema 'views':",
    ]
    entries = json.loads(run_command("list_views", "--format", "json").stdout)
    assert {entry["database"] for entry in entries} == {"default", "warehouse"}


@pytest.mark.django_db
def test_an_invalid_declaration_is_a_command_error(declared_views: list[type]) -> None:
    declare("Broken", materialized=False, sql="SELEKT 1")
    result = run_command("list_views", "--database", "default")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"CommandError: View Broken ({MODULE}) has SQL that PostgreSQL cannot parse"
    )


@pytest.mark.parametrize(
    ("size", "shown"),
    [
        (0, "0 bytes"),
        (8192, "8192 bytes"),
        (10 * 1024, "10 kB"),
        (1536 * 1024, "1.5 MB"),
        (48 * 1024**3, "48 GB"),
        (3 * 1024**5, "3072 TB"),
    ],
)
def test_sizes_read_like_pg_size_pretty(size: int, shown: str) -> None:
    assert human_size(size) == shown


@pytest.mark.django_db
def test_leftover_schemas_are_mentioned() -> None:
    sync_views(database="default")
    with connection.cursor() as cursor:
        cursor.execute('CREATE SCHEMA "views__old_deadbeef"')
        cursor.execute("COMMENT ON SCHEMA views__old_deadbeef IS 'django_orm_views:previous'")
    _, _, footer = table()
    assert footer[-1] == (
        "Schema views__old_deadbeef was left by an interrupted sync; the next sync drops it."
    )


@pytest.mark.django_db
def test_without_the_history_table_refreshes_show_as_never(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sync_views(database="default")
    refresh_materialized_views()
    with connection.cursor() as cursor:  # undone with the test's transaction
        cursor.execute('DROP TABLE "django_orm_views_refreshrecord"')
    _, rows, _ = table()
    assert rows["shop_dailysales"][-4:-2] == ["never", "-"]
    assert "The refresh history cannot be read" in caplog.text


@pytest.mark.django_db
def test_no_declared_views_are_said_so(declared_views: list[type]) -> None:
    declared_views.clear()
    result = run_command("list_views")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "No views are declared.\n", "")
