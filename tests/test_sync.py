"""sync_views end to end on test_project's views, against a real PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection

from django_orm_views import plan_sync, sync_views
from django_orm_views.sync import ActionKind
from test_project.shop import postgres_views as shop_views
from test_project.shop.factories import OrderLineFactory

from .utils import fetch, relations_in, run_command

pytestmark = pytest.mark.django_db

SHOP_VIEWS = {
    "shop_customersanitised": "v",
    "shop_paidorders": "v",
    "shop_ordertotals": "v",
    "shop_customerrevenue": "v",
    "shop_countryrevenue": "v",
    "shop_dailysales": "m",
    "shop_productsales": "m",
    "shop_ordersummary": "v",
    "shop_internalcustomercontacts": "v",
}
SHOP_INDEXES = {
    "shop_dailysales_day": "i",
    "shop_productsales_product_id_country": "i",
    "shop_productsales_country": "i",
}


def test_sync_creates_every_declared_view() -> None:
    report = sync_views()

    assert relations_in("views") == {**SHOP_VIEWS, **SHOP_INDEXES}
    result = report["default"]
    assert result.applied
    assert result.count(ActionKind.CREATE) == len(SHOP_VIEWS)


def test_second_sync_changes_nothing() -> None:
    sync_views()
    assert not plan_sync()
    result = sync_views()["default"]
    assert not result.applied
    assert result.count(ActionKind.KEEP) == len(SHOP_VIEWS)


def test_command_prints_summary_and_per_view_lines() -> None:
    result = run_command("sync_views", "--database", "default", verbosity=2)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert any(line.startswith("  create  materialized view shop_dailysales (") for line in lines)
    assert lines[-1].startswith(
        "Synced on database 'default' (swap): 9 created, 0 replaced, 0 dropped, 0 unchanged in "
    )


def test_materialized_view_is_created_with_data_and_stale_until_refreshed() -> None:
    OrderLineFactory.create_batch(3, order__status="paid")
    sync_views()
    before = fetch('SELECT sum(orders) FROM "views"."shop_dailysales"')[0][0]
    OrderLineFactory.create_batch(2, order__status="paid")
    assert fetch('SELECT sum(orders) FROM "views"."shop_dailysales"')[0][0] == before

    from django_orm_views import refresh_materialized_view

    refresh_materialized_view(shop_views.DailySales)
    assert fetch('SELECT sum(orders) FROM "views"."shop_dailysales"')[0][0] == before + 2
    assert connection.in_atomic_block


def test_verbosity_3_prints_each_statement_run() -> None:
    result = run_command("sync_views", "--database", "default", verbosity=3)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    # A line per view with its time (as at verbosity 2), then every statement.
    assert sum(line.startswith("  create  ") for line in lines) == 9
    statements = [line for line in lines if line.startswith("    ")]
    assert statements[0] == '    CREATE SCHEMA "views__staging";'
    assert '    ALTER SCHEMA "views__staging" RENAME TO "views";' in statements
    assert lines[-1].startswith("Synced on database 'default' (swap): 9 created")


def test_nothing_to_run_is_said_once_in_sync_and_silent_at_verbosity_0() -> None:
    sync_views()
    dry_run = run_command("sync_views", "--dry-run", "--database", "default")
    assert (dry_run.exit_code, dry_run.stdout) == (
        0,
        "-- Database 'default': views in sync, nothing to run.\n",
    )
    quiet = run_command("sync_views", "--dry-run", "--database", "default", verbosity=0)
    assert (quiet.exit_code, quiet.stdout) == (0, "")
    check = run_command("sync_views", "--check", verbosity=0)
    assert (check.exit_code, check.stdout, check.stderr) == (0, "", "")
