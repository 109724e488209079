"""What a sync does: change detection, --check, --dry-run, --force, strategies, grants,
and the errors that leave the database exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test import override_settings

from django_orm_views import (
    PostgresMaterialisedViewMixin,
    PostgresViewFromSQL,
    SyncError,
    plan_sync,
    sync_views,
)
from django_orm_views.registry import autodiscover
from django_orm_views.sync import ActionKind
from test_project.shop import postgres_views as shop_views
from test_project.shop.factories import CustomerFactory, OrderLineFactory

from .utils import fetch, oid_of, run_command, schema_state

pytestmark = pytest.mark.django_db


def sync(*args: str, **options: Any) -> str:
    result = run_command("sync_views", *args, **options)
    assert result.exit_code == 0, result.stderr
    return result.stdout


class TestChangeDetection:
    def test_check_exits_1_before_a_sync_and_0_after(self) -> None:
        result = run_command("sync_views", "--check", "--database", "default")
        assert result.exit_code == 1
        assert (
            result.stdout.splitlines()[0] == "Database 'default' differs from the declared views:"
        )
        assert (
            "  create view shop_countryrevenue [CountryRevenue (test_project.shop.postgres_views)]: new"
            in result.stdout
        )
        assert schema_state() == []
        sync()
        result = run_command("sync_views", "--check", "--database", "default")
        assert result.exit_code == 0
        assert result.stdout == "Database 'default': views in sync.\n"

    def test_dry_run_prints_sql_and_changes_nothing(self) -> None:
        output = sync("--dry-run")
        assert output.startswith("-- Database 'default': statements a sync would run\n")
        assert 'CREATE SCHEMA "views__staging";' in output
        assert 'ALTER SCHEMA "views__staging" RENAME TO "views";' in output
        assert (
            'GRANT SELECT ON TABLE "views__staging"."shop_countryrevenue" TO "analytics";' in output
        )
        assert schema_state() == []

    def test_changed_view_is_replaced_with_its_dependents_only(
        self, declared_views: list[type]
    ) -> None:
        sync()
        kept_materialized = oid_of("shop_dailysales")
        original = shop_views.OrderTotals.sql
        try:
            shop_views.OrderTotals.sql = original + " "
            assert not plan_sync()  # blanks at the end are not a change
            shop_views.OrderTotals.sql = original.replace("FROM", "FROM /* v2 */", 1)
            plan = plan_sync()
            changed = {action.name: action.reason for action in plan.changes}
            assert changed == {
                "shop_ordertotals": "definition changed",
                "shop_customerrevenue": "depends on shop_ordertotals, which is rebuilt",
                "shop_countryrevenue": "depends on shop_customerrevenue, which is rebuilt",
            }
            sync()
            assert not plan_sync()
        finally:
            shop_views.OrderTotals.sql = original
        # The unchanged materialized view was moved across, not rebuilt.
        assert oid_of("shop_dailysales") == kept_materialized

    def test_force_rebuilds_materialized_views(self) -> None:
        sync()
        before = oid_of("shop_dailysales")
        output = sync("--force", verbosity=1)
        assert "0 created, 9 replaced, 0 dropped, 0 unchanged" in output
        assert oid_of("shop_dailysales") != before

    def test_views_no_longer_declared_are_dropped(self, declared_views: list[type]) -> None:
        class Temporary(PostgresViewFromSQL):
            sql = "SELECT 1 AS one"

        sync()
        assert fetch('SELECT one FROM "views"."temporary"') == [(1,)]
        declared_views.remove(Temporary)
        plan = plan_sync()
        assert [(a.kind, a.name, a.reason) for a in plan.changes] == [
            (ActionKind.DROP, "temporary", "not declared")
        ]
        sync()
        assert fetch("SELECT to_regclass('views.temporary')") == [(None,)]

    def test_no_op_sync_makes_one_catalog_query(self) -> None:
        sync()
        queries: list[str] = []

        def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            queries.append(sql)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(record):
            output = sync()
        assert output.startswith("Views already in sync on database 'default' (swap)")
        assert len(queries) == 1


class TestStrategies:
    def test_recreate_strategy(self) -> None:
        output = sync("--strategy", "recreate")
        assert "Synced on database 'default' (recreate): 9 created" in output
        assert fetch('SELECT count(*) FROM "views"."shop_countryrevenue"') == [(0,)]

    @override_settings(ORM_VIEWS_SYNC_STRATEGY="recreate")
    def test_strategy_from_settings(self) -> None:
        assert "(recreate)" in sync()

    @override_settings(ORM_VIEWS_SYNC_STRATEGY="sideways")
    def test_unknown_strategy_setting(self) -> None:
        result = run_command("sync_views")
        assert result.exit_code == 1
        assert (
            "ORM_VIEWS_SYNC_STRATEGY = 'sideways' is not a strategy. Use one of: swap, recreate."
            in result.stderr
        )

    @pytest.mark.parametrize("strategy", ["swap", "recreate"])
    def test_sync_inside_an_outer_transaction(self, strategy: str) -> None:
        CustomerFactory.create()
        with transaction.atomic():
            sync("--strategy", strategy)
            assert fetch('SELECT count(*) FROM "views"."shop_customersanitised"') == [(1,)]
        assert connection.in_atomic_block  # still the test's own transaction


class TestFailuresChangeNothing:
    @pytest.mark.parametrize("strategy", ["swap", "recreate"])
    def test_postgres_error_names_the_class_and_leaves_the_views(
        self, strategy: str, declared_views: list[type]
    ) -> None:
        sync()
        before = schema_state()

        class BadColumn(PostgresViewFromSQL):
            sql = "SELECT no_such_column FROM shop_customer"

        result = run_command("sync_views", "--strategy", strategy)
        assert result.exit_code == 1
        assert (
            "CommandError: View TestFailuresChangeNothing.test_postgres_error_names_the_class_and_leaves_the_views.<locals>.BadColumn (tests.test_sync_behaviour): PostgreSQL refused `CREATE VIEW"
            in result.stderr
        )
        assert 'column "no_such_column" does not exist' in result.stderr
        assert (
            "The live views are unchanged. Fix the view's SQL, then run sync_views again."
            in result.stderr
        )
        assert schema_state() == before
        assert fetch('SELECT count(*) FROM "views"."shop_countryrevenue"') == [(0,)]

    def test_missing_dependency(self, declared_views: list[type]) -> None:
        sync()
        before = schema_state()

        class ReadsGhost(PostgresViewFromSQL):
            sql = 'SELECT * FROM "views"."ghost"'

        result = run_command("sync_views")
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: View TestFailuresChangeNothing.test_missing_dependency.<locals>.ReadsGhost "
            "(tests.test_sync_behaviour) reads views.ghost, but no view class on database 'default' "
            "is named 'ghost'. Declare that view, or fix the SQL.\n"
        )
        assert schema_state() == before

    def test_cycle(self, declared_views: list[type]) -> None:
        class First(PostgresViewFromSQL):
            sql = "SELECT * FROM views.second"

        class Second(PostgresViewFromSQL):
            view_dependencies = [First]
            sql = "SELECT 1 AS one"

        result = run_command("sync_views")
        assert result.exit_code == 1
        assert "Views depend on each other in a cycle:" in result.stderr
        assert "First (tests.test_sync_behaviour)" in result.stderr
        assert "Second (tests.test_sync_behaviour)" in result.stderr
        assert schema_state() == []

    def test_unknown_role(self) -> None:
        sync()
        before = schema_state()
        result = run_command(
            "sync_views", "--force", "--grant-select-permissions-to-user", "no_such_role_x"
        )
        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Cannot grant SELECT on database 'default': role(s) 'no_such_role_x' "
            "(from --grant-select-permissions-to-user) do not exist. Create them (CREATE ROLE "
            "...) or remove them from the setting, option or class. Nothing was changed.\n"
        )
        assert schema_state() == before

    def test_outside_dependents_block_the_sync(self, declared_views: list[type]) -> None:
        sync()
        with connection.cursor() as cursor:
            cursor.execute('CREATE VIEW public.report AS SELECT * FROM "views"."shop_ordertotals"')
        before = schema_state()
        result = run_command("sync_views", "--force")
        assert result.exit_code == 1
        assert (
            "objects outside the 'views' schema depend on views this sync would replace or "
            "drop (view public.report depends on views.shop_ordertotals)" in result.stderr
        )
        assert schema_state() == before

        # Unchanged, the view it reads is moved across and the outside view keeps working.
        class Extra(PostgresViewFromSQL):
            sql = "SELECT 2 AS two"

        sync()
        assert fetch("SELECT count(*) FROM public.report") == [(0,)]


class TestGrants:
    def read_as(self, role: str, sql: str) -> str:
        """Run ``sql`` as ``role``; 'ok' or the PostgreSQL error."""
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(f'SET LOCAL ROLE "{role}"')
                cursor.execute(sql)
                cursor.fetchall()
                cursor.execute("RESET ROLE")
            return "ok"
        except ProgrammingError as error:
            return str(error).splitlines()[0]

    def test_analytics_reads_views_but_not_personal_data(self) -> None:
        OrderLineFactory.create(order__status="paid")
        sync()
        for view in (
            "shop_customersanitised",
            "shop_countryrevenue",
            "shop_dailysales",
            "shop_ordersummary",
        ):
            assert self.read_as("analytics", f'SELECT * FROM "views"."{view}"') == "ok"
        assert self.read_as("analytics", "SELECT * FROM shop_customer") == (
            "permission denied for table shop_customer"
        )
        assert self.read_as(
            "analytics", 'SELECT * FROM "views"."shop_internalcustomercontacts"'
        ) == ("permission denied for view shop_internalcustomercontacts")

    def test_grants_are_reconciled_without_rebuilding(self) -> None:
        sync()
        with connection.cursor() as cursor:
            cursor.execute('REVOKE SELECT ON "views"."shop_dailysales" FROM analytics')
            cursor.execute('GRANT SELECT ON "views"."shop_internalcustomercontacts" TO analytics')
        before = oid_of("shop_dailysales")
        plan = plan_sync()
        assert plan.describe() == [
            "update materialized view shop_dailysales [DailySales (test_project.shop.postgres_views)]: grant SELECT to analytics",
            "update view shop_internalcustomercontacts [InternalCustomerContacts (test_project.shop.postgres_views)]: revoke SELECT from analytics",
        ]
        sync()
        assert not plan_sync()
        assert oid_of("shop_dailysales") == before
        assert self.read_as("analytics", 'SELECT * FROM "views"."shop_dailysales"') == "ok"

    @override_settings(ORM_VIEWS_GRANT_SELECT_TO=[])
    def test_grants_follow_the_option(self) -> None:
        sync("--grant-select-permissions-to-user", "analytics")
        assert self.read_as("analytics", 'SELECT * FROM "views"."shop_paidorders"') == "ok"
        assert plan_sync(grant_select_permissions_to_user="analytics").changes == []


class TestMaterialized:
    def test_refresh_inside_a_transaction(self) -> None:
        sync()
        OrderLineFactory.create(order__status="paid", quantity=3)
        with transaction.atomic():
            from django_orm_views import refresh_materialized_view

            refresh_materialized_view(shop_views.DailySales(), concurrently=True)
            assert fetch('SELECT sum(units) FROM "views"."shop_dailysales"') == [(3,)]

    def test_concurrent_refresh_needs_a_unique_index(self, declared_views: list[type]) -> None:
        from django_orm_views import RefreshError, refresh_materialized_view

        class NoKey(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
            sql = "SELECT 1 AS one"

        sync()
        with pytest.raises(RefreshError) as error:
            refresh_materialized_view(NoKey, concurrently=True)
        assert str(error.value) == (
            "View TestMaterialized.test_concurrent_refresh_needs_a_unique_index.<locals>.NoKey "
            "(tests.test_sync_behaviour) cannot be refreshed concurrently: it has no unique index. "
            "Set `pk_field` to its unique column(s), or refresh without concurrently."
        )
        assert isinstance(error.value, ValueError)


def test_import_errors_in_postgres_views_surface(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.apps import apps

    from django_orm_views.exceptions import ViewDiscoveryError

    class FakeApp:
        name = "tests.broken_app"

    monkeypatch.setattr(apps, "get_app_configs", lambda: [FakeApp()])
    with pytest.raises(ViewDiscoveryError) as error:
        autodiscover()
    assert str(error.value) == (
        "Importing tests.broken_app.postgres_views failed: No module named "
        "'a_module_that_does_not_exist'. Fix the import in that module."
    )


def test_apps_without_postgres_views_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.apps import apps

    class FakeApp:
        name = "tests"

    monkeypatch.setattr(apps, "get_app_configs", lambda: [FakeApp()])
    autodiscover()


def test_a_failing_batch_is_retried_view_by_view_to_name_the_view(
    declared_views: list[type],
) -> None:
    class Fine(PostgresViewFromSQL):
        sql = "SELECT 1 AS one"

    class Broken(PostgresViewFromSQL):
        sql = "SELECT missing_column FROM shop_customer"

    with pytest.raises(SyncError) as error:
        sync_views(database="default")
    assert "Broken (tests.test_sync_behaviour): PostgreSQL refused `CREATE VIEW" in str(error.value)
    assert schema_state() == []


def test_verbosity_2_times_each_view() -> None:
    result = run_command("sync_views", verbosity=2)
    timed = [line for line in result.stdout.splitlines() if line.startswith("  create ")]
    assert len(timed) >= 9
    assert all(line.endswith("s)") for line in timed)
