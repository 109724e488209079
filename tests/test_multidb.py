"""Two databases: test_project's ``default`` (shop) and ``warehouse`` (warehouse app).

A view lives where its ``database`` attribute says, else where the routers allow its
app; syncs, refreshes, listings and sync-on-migrate follow it.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connections
from django.test import override_settings

from django_orm_views import sync_views
from test_project.shop import postgres_views as shop_views
from test_project.warehouse import postgres_views as warehouse_views
from test_project.warehouse.models import StockMovement

from .conftest import drop_view_schemas
from .utils import fetch, relations_in, run_command

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])

WAREHOUSE_VIEWS = {"warehouse_stocklevel": "v", "warehouse_dailymovements": "m"}


def views_in(alias: str) -> dict[str, str]:
    return {name: kind for name, kind in relations_in("views", alias).items() if kind in ("v", "m")}


def move(sku: str, quantity: int, location: str = "A", day: int = 1) -> None:
    StockMovement.objects.create(
        sku=sku,
        location=location,
        quantity=quantity,
        moved_at=dt.datetime(2025, 1, day, 12, tzinfo=dt.timezone.utc),
    )


@pytest.fixture(autouse=True)
def no_views_on_the_warehouse() -> None:
    # Other tests' manage.py subprocesses may have committed views there.
    drop_view_schemas("warehouse")


class TestWhereViewsLive:
    def test_the_database_attribute_and_the_routers(self) -> None:
        assert shop_views.CustomerSanitised.database == "default"
        assert warehouse_views.DailyMovements.database == "warehouse"  # its own attribute
        assert warehouse_views.StockLevel.database == "warehouse"  # the router's choice
        with override_settings(DATABASE_ROUTERS=[]):
            assert warehouse_views.StockLevel.database == "default"
            assert warehouse_views.DailyMovements.database == "warehouse"

    def test_the_router_keeps_other_apps_off_the_warehouse(self) -> None:
        tables = {
            name
            for (name,) in fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'", alias="warehouse"
            )
        }
        assert tables == {"django_migrations", "warehouse_stockmovement"}


class TestSync:
    def test_without_database_every_alias_with_views_is_synced(self) -> None:
        report = sync_views()
        assert [result.database for result in report] == ["default", "warehouse"]
        assert views_in("warehouse") == WAREHOUSE_VIEWS
        assert set(views_in("default")) == {
            "shop_customersanitised",
            "shop_paidorders",
            "shop_ordertotals",
            "shop_customerrevenue",
            "shop_countryrevenue",
            "shop_dailysales",
            "shop_productsales",
            "shop_ordersummary",
            "shop_internalcustomercontacts",
        }

    def test_the_command_with_database_touches_that_database_only(self) -> None:
        result = run_command("sync_views", "--database", "warehouse")
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(
            "Synced on database 'warehouse' (swap): 2 created, 0 replaced, 0 dropped, 0 unchanged"
        )
        assert views_in("warehouse") == WAREHOUSE_VIEWS
        assert views_in("default") == {}

    def test_check_covers_every_database(self) -> None:
        run_command("sync_views", "--database", "default")
        result = run_command("sync_views", "--check")
        assert result.exit_code == 1
        assert "Database 'default': views in sync." in result.stdout
        assert "Database 'warehouse' differs from the declared views:" in result.stdout
        run_command("sync_views")
        result = run_command("sync_views", "--check")
        assert (result.exit_code, result.stdout) == (
            0,
            "Database 'default': views in sync.\nDatabase 'warehouse': views in sync.\n",
        )

    def test_queryset_views_are_compiled_for_their_database(self) -> None:
        move("SKU-1", 10, "A")
        move("SKU-1", -3, "B")
        move("SKU-2", 4, "A")
        sync_views(database="warehouse")
        # The readable view's manager reads from the warehouse, whatever the routers say
        # about reads.
        levels = {
            level.sku: (level.quantity, level.locations)
            for level in warehouse_views.StockLevel.objects.all()
        }
        assert levels == {"SKU-1": (7, 2), "SKU-2": (4, 1)}
        assert warehouse_views.StockLevel.objects.get(sku="SKU-2").quantity == 4


class TestRefreshAndList:
    def test_refresh_views_with_database(self) -> None:
        sync_views()
        move("SKU-1", 5, day=2)
        assert fetch("SELECT count(*) FROM views.warehouse_dailymovements", alias="warehouse") == [
            (0,)
        ]
        result = run_command("refresh_views", "--database", "default")
        assert result.exit_code == 0, result.stderr
        assert fetch("SELECT count(*) FROM views.warehouse_dailymovements", alias="warehouse") == [
            (0,)
        ]
        result = run_command("refresh_views", "--database", "warehouse")
        assert result.exit_code == 0, result.stderr
        assert fetch(
            "SELECT day, units_in FROM views.warehouse_dailymovements", alias="warehouse"
        ) == [(dt.date(2025, 1, 2), 5)]

    def test_list_views_with_and_without_database(self) -> None:
        sync_views()
        only = run_command("list_views", "--database", "warehouse")
        assert only.exit_code == 0, only.stderr
        assert "warehouse_dailymovements" in only.stdout
        assert "shop_dailysales" not in only.stdout
        every = run_command("list_views")
        assert "warehouse_stocklevel" in every.stdout
        assert "shop_dailysales" in every.stdout


class TestMigrations:
    def test_makemigrations_check_is_clean(self) -> None:
        result = run_command("makemigrations", "--check", "--dry-run")
        assert (result.exit_code, result.stdout) == (0, "No changes detected\n")

    def test_sync_on_migrate_syncs_the_migrated_database_only(self) -> None:
        with override_settings(ORM_VIEWS_SYNC_ON_MIGRATE=True):
            result = run_command("migrate", "--database", "warehouse", verbosity=1)
        assert result.exit_code == 0, result.stderr
        assert result.stdout.count("Synced on database") == 1
        assert (
            "Synced on database 'warehouse' (swap): 2 created, 0 replaced, 0 dropped, 0 unchanged"
            in result.stdout
        )
        assert views_in("warehouse") == WAREHOUSE_VIEWS
        assert views_in("default") == {}
        assert connections["warehouse"].in_atomic_block  # the test's own transaction
