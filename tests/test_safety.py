"""Nothing lost, nobody let in, exit 0 means done: a sync or a refresh never drops what
it did not create, never grants what was not declared, and never reports success for
work it did not do. Each test tries to break one of those promises on a real server."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, models
from django.test import override_settings

from django_orm_views import ReadableViewFromSQL
from django_orm_views.introspection import read_catalog
from django_orm_views.views import declared_classes

from .conftest import ANALYTICS_ROLE, create_role
from .utils import fetch, leftovers, run_command, schema_state

pytestmark = pytest.mark.django_db


def execute(*statements: str) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def sync(*args: str, **options: Any) -> str:
    result = run_command("sync_views", "--database", "default", *args, **options)
    assert result.exit_code == 0, result.stderr
    # Exit status 0 means the database matches the code (with the same roles to grant).
    grants = [
        value
        for option, value in itertools.pairwise(args)
        if option == "--grant-select-permissions-to-user"
    ]
    check_args = [arg for role in grants for arg in ("--grant-select-permissions-to-user", role)]
    check = run_command("sync_views", "--check", "--database", "default", *check_args)
    assert check.exit_code == 0, check.stdout
    return result.stdout


def refused(*args: str, **options: Any) -> str:
    """Run a sync that must refuse: non-zero, nothing changed; returns its message."""
    before = schema_state()
    result = run_command("sync_views", "--database", "default", *args, **options)
    assert result.exit_code != 0, result.stdout
    assert schema_state() == before
    assert "Nothing was changed" in result.stderr
    return result.stderr


def can_select(role: str, relation: str) -> bool:
    return bool(fetch("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, relation])[0][0])


# Data that is not ours is never dropped ---------------------------------------------------


ROW_TYPE_USERS = {
    "a table column": "CREATE TABLE public.keeps_rows (row_value views.shop_ordertotals)",
    "an array column": "CREATE TABLE public.keeps_arrays (rows views.shop_ordertotals[])",
    "a function returning the rows": (
        "CREATE FUNCTION public.totals() RETURNS SETOF views.shop_ordertotals "
        "LANGUAGE sql AS 'SELECT * FROM views.shop_ordertotals'"
    ),
    "a function taking a row": (
        "CREATE FUNCTION public.total_of(views.shop_ordertotals) RETURNS numeric "
        "LANGUAGE sql AS 'SELECT 1::numeric'"
    ),
}


@pytest.mark.parametrize("strategy", ["swap", "recreate"])
@pytest.mark.parametrize("user", sorted(ROW_TYPE_USERS))
def test_objects_using_a_views_row_type_are_never_dropped(user: str, strategy: str) -> None:
    sync()
    execute(ROW_TYPE_USERS[user])
    if "keeps_rows" in ROW_TYPE_USERS[user]:
        execute("INSERT INTO public.keeps_rows VALUES (NULL)")

    message = refused("--force", "--strategy", strategy)

    assert "uses the row type of views.shop_ordertotals" in message
    assert fetch("SELECT count(*) FROM pg_proc WHERE proname IN ('totals', 'total_of')")[0][0] == (
        1 if "function" in user else 0
    )
    if "keeps_rows" in ROW_TYPE_USERS[user]:
        assert fetch("SELECT count(*) FROM public.keeps_rows") == [(1,)]


def test_a_dropped_declaration_with_a_row_type_user_is_refused(declared_views: list[type]) -> None:
    sync()
    execute("CREATE TABLE public.keeps_rows (row_value views.shop_ordertotals)")
    # Forget every view: the plan would drop them all.
    declared_views.clear()
    message = refused()
    assert "column row_value of table keeps_rows" in message


def test_the_migrate_path_refuses_to_drop_a_view_whose_row_type_is_used() -> None:
    from django_orm_views.exceptions import ExternalDependentsError
    from django_orm_views.migrate import Target, drop_dependent_views

    sync()
    execute("CREATE TABLE public.keeps_rows (row_value views.shop_customerrevenue)")
    before = schema_state()
    with pytest.raises(ExternalDependentsError) as caught:
        drop_dependent_views(connection, [Target("shop_customer", "country", "shop.0002")])
    assert "uses the row type of views.shop_customerrevenue" in str(caught.value)
    assert "Nothing was changed" in str(caught.value)
    assert schema_state() == before


def test_a_users_schema_named_like_a_working_schema_is_never_dropped() -> None:
    execute(
        "CREATE SCHEMA views__old_archive",
        "CREATE TABLE views__old_archive.invoices (id int)",
        "INSERT INTO views__old_archive.invoices VALUES (1), (2)",
        "CREATE SCHEMA views__old_1234abcd",
        "CREATE VIEW views__old_1234abcd.hand_made AS SELECT 1 AS one",
    )
    sync()
    sync("--force")
    assert fetch("SELECT count(*) FROM views__old_archive.invoices") == [(2,)]
    assert fetch("SELECT count(*) FROM views__old_1234abcd.hand_made") == [(1,)]


def test_the_package_drops_its_own_leftovers_recognised_by_their_marker() -> None:
    sync()
    # A working schema a killed sync left behind carries the package's marker.
    execute(
        "CREATE SCHEMA views__old_0badf00d",
        "COMMENT ON SCHEMA views__old_0badf00d IS 'django_orm_views:previous'",
        "CREATE VIEW views__old_0badf00d.leftover AS SELECT 1 AS one",
        'COMMENT ON RULE "_RETURN" ON views__old_0badf00d.leftover IS '
        '\'django_orm_views {"extra_roles": [], "fingerprint": "x"}\'',
    )
    output = sync()
    assert "Dropped schema views__old_0badf00d left by an interrupted sync." in output
    assert fetch("SELECT count(*) FROM pg_namespace WHERE nspname = 'views__old_0badf00d'") == [
        (0,)
    ]


def test_a_marked_leftover_holding_a_table_is_kept() -> None:
    sync()
    execute(
        "CREATE SCHEMA views__old_0badf00d",
        "COMMENT ON SCHEMA views__old_0badf00d IS 'django_orm_views:previous'",
        "CREATE TABLE views__old_0badf00d.precious (id int)",
        "INSERT INTO views__old_0badf00d.precious VALUES (1)",
    )
    sync("--force")
    assert fetch("SELECT count(*) FROM views__old_0badf00d.precious") == [(1,)]


def test_a_users_schema_with_the_staging_name_is_refused() -> None:
    execute("CREATE SCHEMA views__staging", "CREATE TABLE views__staging.mine (id int)")
    message = refused()
    assert "'views__staging' exists but was not created by django-orm-views" in message
    assert fetch("SELECT count(*) FROM views__staging.mine") == [(0,)]


FOREIGN_OBJECTS = {
    "table": ("CREATE TABLE views.hand_made (id int)", "table views.hand_made"),
    "sequence": ("CREATE SEQUENCE views.hand_made", "sequence views.hand_made"),
    "function": (
        "CREATE FUNCTION views.hand_made() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "function views.hand_made()",
    ),
    "type": ("CREATE TYPE views.hand_made AS (a int)", "type views.hand_made"),
    "enum": ("CREATE TYPE views.hand_made AS ENUM ('a')", "type views.hand_made"),
    "view": ("CREATE VIEW views.hand_made AS SELECT 1 AS one", "view views.hand_made"),
    "materialized view": (
        "CREATE MATERIALIZED VIEW views.hand_made AS SELECT 1 AS one",
        "materialized view views.hand_made",
    ),
}


@pytest.mark.parametrize("strategy", ["swap", "recreate"])
@pytest.mark.parametrize("kind", sorted(FOREIGN_OBJECTS))
def test_objects_the_package_did_not_create_in_the_views_schema_are_refused(
    kind: str, strategy: str
) -> None:
    sync()
    statement, described = FOREIGN_OBJECTS[kind]
    execute(statement)

    message = refused("--force", "--strategy", strategy)

    assert f"holds objects that django-orm-views did not create ({described})" in message
    assert "set ORM_VIEWS_SCHEMA to a schema of the package's own" in message
    # Without a change to make, a sync leaves them alone and succeeds.
    assert run_command("sync_views", "--database", "default").exit_code == 0


@pytest.mark.parametrize("schema", ["reporting", "public"])
def test_a_schema_of_tables_is_never_dropped_through_call_command(schema: str) -> None:
    if schema == "reporting":
        execute("CREATE SCHEMA reporting", "CREATE TABLE reporting.ledger (id int)")
        execute("INSERT INTO reporting.ledger VALUES (1)")
    tables_before = fetch(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        [schema],
    )
    with override_settings(ORM_VIEWS_SCHEMA=schema):
        result = run_command("sync_views", "--database", "default")
    assert result.exit_code != 0
    assert "views this sync would replace" not in result.stderr
    if schema == "public":  # refused as a setting, before any query
        assert "ORM_VIEWS_SCHEMA = 'public' names a schema" in result.stderr
    else:
        assert "did not create" in result.stderr
        assert "Nothing was changed" in result.stderr
    tables_after = fetch(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r'",
        [schema],
    )
    assert tables_after == tables_before
    if schema == "reporting":
        assert fetch("SELECT count(*) FROM reporting.ledger") == [(1,)]


def test_a_view_of_a_declared_name_made_elsewhere_is_taken_over() -> None:
    """Views made by django-orm-views 2 (no marker) are replaced by their classes."""
    execute(
        "CREATE SCHEMA views",
        "CREATE VIEW views.shop_ordertotals AS SELECT 1 AS order_id",
    )
    output = sync("--verbosity", "2")
    assert "replace view shop_ordertotals" in output
    snapshot = read_catalog(connection, "views")
    assert snapshot.objects["shop_ordertotals"].owned


def test_the_marker_is_on_the_rule_and_the_views_comment_is_its_docstring() -> None:
    sync()
    docstring = "One row an order, with its total and number of lines."
    comment = "SELECT obj_description('views.shop_ordertotals'::regclass, 'pg_class')"
    assert fetch(comment) == [(docstring,)]
    oid = fetch("SELECT 'views.shop_ordertotals'::regclass::oid")
    execute("COMMENT ON VIEW views.shop_ordertotals IS 'Edited by hand'")
    check = run_command("sync_views", "--check", "--database", "default")
    assert check.exit_code == 1
    assert "update view shop_ordertotals [OrderTotals (test_project.shop.postgres_views)]: " in (
        check.stdout
    )
    # The declared comment comes back in place: the view is not rebuilt.
    sync()
    assert fetch(comment) == [(docstring,)]
    assert fetch("SELECT 'views.shop_ordertotals'::regclass::oid") == oid
    marker = fetch(
        "SELECT obj_description(r.oid, 'pg_rewrite') FROM pg_rewrite r "
        "WHERE r.ev_class = 'views.shop_ordertotals'::regclass"
    )[0][0]
    assert marker.startswith("django_orm_views ")


# Grants are exactly what was declared ------------------------------------------------------


def test_refresh_by_swap_grants_only_declared_and_recorded_roles() -> None:
    create_role("hand_granted")
    create_role("deploy_reader")
    sync("--grant-select-permissions-to-user", "deploy_reader")
    # A DBA lets one role read one view, by hand.
    execute(
        'GRANT USAGE ON SCHEMA views TO "hand_granted"',
        'GRANT SELECT ON views.shop_ordertotals TO "hand_granted"',
    )

    result = run_command("refresh_views", "shop_dailysales", "--no-concurrently")
    assert result.exit_code == 0, result.stderr

    assert not can_select("hand_granted", "views.shop_dailysales")
    assert not can_select("hand_granted", "views.shop_productsales")
    # The role passed to the last sync is recorded by the package and kept.
    assert can_select("deploy_reader", "views.shop_dailysales")
    assert can_select(ANALYTICS_ROLE, "views.shop_dailysales")


def test_a_sync_revokes_grants_nobody_declared() -> None:
    create_role("hand_granted")
    sync()
    execute('GRANT SELECT ON views.shop_ordertotals TO "hand_granted"')
    assert run_command("sync_views", "--check", "--database", "default").exit_code == 1
    sync()
    assert not can_select("hand_granted", "views.shop_ordertotals")


# Exit status 0 means the database matches the code -----------------------------------------


SCENARIOS: dict[str, list[tuple[str, ...]]] = {
    "first sync": [()],
    "force": [(), ("--force",)],
    "recreate": [(), ("--strategy", "recreate")],
    "recreate forced": [(), ("--strategy", "recreate", "--force")],
    "extra role": [(), ("--grant-select-permissions-to-user", ANALYTICS_ROLE)],
    "time each view": [("--verbosity", "2"), ("--force", "--verbosity", "2")],
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_exit_0_is_followed_by_a_clean_check(scenario: str) -> None:
    for args in SCENARIOS[scenario]:
        sync(*args)  # asserts `sync_views --check` exits 0 after each


@pytest.mark.parametrize("attempts", [0, -1])
def test_no_attempt_at_the_swap_is_never_an_exit_0(attempts: int) -> None:
    sync()
    with override_settings(ORM_VIEWS_SWAP_ATTEMPTS=attempts):
        result = run_command("sync_views", "--database", "default", "--force")
    # Refused as a bad setting, or run once: never "replaced" without a swap.
    if result.exit_code != 0:
        assert "ORM_VIEWS_SWAP_ATTEMPTS" in result.stderr
    else:
        assert "9 replaced" in result.stdout
    assert run_command("sync_views", "--check", "--database", "default").exit_code == 0
    assert leftovers() == []


def test_with_no_views_declared_the_packages_views_are_planned_and_dropped(
    declared_views: list[type],
) -> None:
    sync()
    declared_views.clear()

    check = run_command("sync_views", "--check")
    assert check.exit_code == 1
    assert "drop view shop_ordertotals: not declared" in check.stdout
    listing = run_command("list_views")
    assert "No views are declared" not in listing.stdout
    assert "shop_ordertotals" in listing.stdout

    result = run_command("sync_views")
    assert result.exit_code == 0, result.stderr
    assert run_command("sync_views", "--check").exit_code == 0
    assert not read_catalog(connection, "views").owned_objects


# Readable views are checked against the columns they read ---------------------------------


class MisspeltCustomers(ReadableViewFromSQL):
    prefix = "safety"
    sql = "SELECT id, name, country FROM shop_customer"
    id = models.BigIntegerField(primary_key=True)
    nmae = models.TextField()
    country = models.TextField()

    class Meta:
        app_label = "shop"


declared_classes.remove(MisspeltCustomers)


@pytest.fixture
def misspelt(declared_views: list[type]) -> Iterator[None]:
    declared_views.append(MisspeltCustomers)
    yield


@pytest.mark.parametrize("strategy", ["swap", "recreate"])
def test_a_readable_field_without_a_column_fails_the_sync(misspelt: None, strategy: str) -> None:
    message = refused("--strategy", strategy)
    assert "MisspeltCustomers (tests.test_safety)" in message
    assert "field column 'nmae'" in message
    assert "the closest column is 'name'" in message
    assert run_command("sync_views", "--check", "--database", "default").exit_code == 1
