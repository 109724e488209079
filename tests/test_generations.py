"""Generations of the views schema: the previous one a swap keeps, the storage schemas
materialized views live in (which no swap moves), ``sync_views --rollback`` and
``--prune``, and the refusals that leave the database as it was."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_orm_views import plan_sync, sync_views
from django_orm_views.history import refresh_history
from django_orm_views.introspection import CatalogSnapshot, owner_marker, read_catalog
from django_orm_views.refresh import refresh_materialized_views
from django_orm_views.sql import quote_literal
from test_project.shop import postgres_views as shop_views

from .test_sync_faults import open_transaction
from .utils import (
    declare_view,
    fetch,
    leftovers,
    oid_of,
    relations_in,
    run_command,
    schemas_like,
    stored_in,
)

pytestmark = pytest.mark.django_db

OLD_SCHEMAS = "views\\_\\_old\\_%"
DATA_SCHEMAS = "views\\_\\_data\\_%"
MODULE = "tests.test_generations"


def catalog() -> CatalogSnapshot:
    return read_catalog(connection, "views")


def sync(*args: str) -> str:
    result = run_command("sync_views", "--database", "default", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture
def changed_totals() -> Iterator[None]:
    """shop_ordertotals (and the two views over it) declared with another definition."""
    original = shop_views.OrderTotals.sql
    shop_views.OrderTotals.sql = original.replace("FROM", "FROM /* v2 */", 1)
    yield
    shop_views.OrderTotals.sql = original


def execute(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def definition(schema: str, name: str) -> str:
    return str(fetch("SELECT pg_get_viewdef(%s::regclass)", [f'"{schema}"."{name}"'])[0][0])


class TestPreviousGeneration:
    def test_a_swap_keeps_the_replaced_schema_as_the_previous_generation(self) -> None:
        sync_views(database="default")
        first = catalog()
        assert first.generation is not None
        old_definition = definition("views", "shop_ordertotals")
        shop_views.OrderTotals.sql = shop_views.OrderTotals.sql.replace("FROM", "FROM /* v2 */", 1)
        try:
            started = time.time()
            (result,) = sync_views(database="default")
        finally:
            autodiscover_again()
        # Named after the generation it was, marked with when and what it held.
        assert result.previous_generation == f"views__old_{first.generation}"
        (previous,) = catalog().previous_generations()
        assert previous.name == result.previous_generation
        assert previous.views == tuple(sorted(first.owned_objects))
        assert (
            previous.replaced_at is not None
            and started - 1 < previous.replaced_at < time.time() + 1
        )
        # Still readable as it was, by a query that started before the swap.
        assert definition(previous.name, "shop_ordertotals") == old_definition
        assert fetch(f'SELECT count(*) FROM "{previous.name}".shop_dailysales') == [(0,)]
        # The live generation is a new one; --check only looks at the live one.
        assert catalog().generation == result.generation != first.generation
        assert leftovers() == []

    def test_at_most_one_previous_generation_is_kept(self, changed_totals: None) -> None:
        for _ in range(3):
            sync_views(database="default", force=True)
        assert len(schemas_like(OLD_SCHEMAS)) == 1
        assert leftovers() == []
        assert run_command("sync_views", "--check", "--database", "default").exit_code == 0

    def test_an_expired_previous_generation_is_dropped_by_the_next_sync_even_a_no_op(
        self,
    ) -> None:
        sync_views(database="default")
        (result,) = sync_views(database="default", force=True)
        assert schemas_like(OLD_SCHEMAS) == [result.previous_generation]
        assert not plan_sync()
        with override_settings(ORM_VIEWS_KEEP_PREVIOUS_SECONDS=0.5):
            time.sleep(0.6)
            (no_op,) = sync_views(database="default")
        assert not no_op.applied
        assert no_op.dropped_previous == [result.previous_generation]
        assert schemas_like(OLD_SCHEMAS) == []
        assert leftovers() == []

    def test_zero_seconds_drops_the_replaced_schema_right_after_the_swap(self) -> None:
        with override_settings(ORM_VIEWS_KEEP_PREVIOUS_SECONDS=0):
            sync_views(database="default")
            (result,) = sync_views(database="default", force=True)
        assert result.previous_generation is None
        assert schemas_like(OLD_SCHEMAS) == []
        assert leftovers() == []

    def test_a_no_op_sync_is_one_round_trip_while_a_previous_generation_is_kept(self) -> None:
        sync_views(database="default")
        sync_views(database="default", force=True)
        assert len(schemas_like(OLD_SCHEMAS)) == 1
        with CaptureQueriesContext(connection) as queries:
            (result,) = sync_views(database="default")
        assert not result.applied
        assert len(queries.captured_queries) == 1, queries.captured_queries


class TestStorage:
    def test_an_unchanged_materialized_view_is_neither_moved_nor_rebuilt(
        self, declared_views: list[type]
    ) -> None:
        sync_views(database="default")
        stored = oid_of("shop_dailysales")
        storage = stored_in("shop_dailysales")
        # The live view points to the stored one, which holds the rows and the indexes.
        assert fetch(
            "SELECT relkind FROM pg_class WHERE oid = %s::regclass", ['"views"."shop_dailysales"']
        ) == [("v",)]
        assert relations_in(storage)["shop_dailysales"] == "m"
        declared_views.append(
            declare_view("Added", module=MODULE, materialized=False, sql="SELECT 1 AS id")
        )
        (result,) = sync_views(database="default")
        assert result.applied and result.previous_generation is not None
        # Swapped: same stored relation, in the same storage schema; nothing was moved.
        assert oid_of("shop_dailysales") == stored
        assert stored_in("shop_dailysales") == storage
        assert not any("SET SCHEMA" in statement for statement in result.statements)

    def test_a_changed_materialized_view_is_stored_anew_and_the_old_one_pruned(
        self, declared_views: list[type]
    ) -> None:
        view = declare_view("Kept", module=MODULE, sql="SELECT 1 AS id")
        changing = declare_view("Changing", module=MODULE, sql="SELECT 1 AS version")
        declared_views += [view, changing]
        sync_views(database="default")
        first_storage = stored_in("changing")
        kept_oid = oid_of("kept")
        changing.sql = "SELECT 2 AS version"
        sync_views(database="default")
        new_storage = stored_in("changing")
        assert new_storage != first_storage
        assert fetch("SELECT version FROM views.changing") == [(2,)]
        # The previous generation still reads the old contents, from the old storage.
        (previous,) = schemas_like(OLD_SCHEMAS)
        assert fetch(f'SELECT version FROM "{previous}".changing') == [(1,)]
        assert stored_in("kept") == first_storage and oid_of("kept") == kept_oid

        result = run_command("sync_views", "--prune", "--database", "default")

        assert result.exit_code == 0, result.stderr
        assert result.stdout == (f"Pruned database 'default': {previous}; 1 stored view(s).\n")
        assert schemas_like(OLD_SCHEMAS) == []
        # The old copy went; the unchanged one, still live, stayed where it was.
        assert "changing" not in relations_in(first_storage)
        assert oid_of("kept") == kept_oid
        assert fetch("SELECT version FROM views.changing") == [(2,)]
        assert not plan_sync()
        assert leftovers() == []

    def test_storage_emptied_by_a_prune_is_dropped(self) -> None:
        sync_views(database="default")
        first_storage = stored_in("shop_dailysales")
        sync_views(database="default", force=True)
        second_storage = stored_in("shop_dailysales")
        assert schemas_like(DATA_SCHEMAS) == sorted([first_storage, second_storage])
        run_command("sync_views", "--prune", "--database", "default")
        assert schemas_like(DATA_SCHEMAS) == [second_storage]
        assert leftovers() == []

    def test_schemas_that_only_look_like_the_packages_are_never_touched(self) -> None:
        execute("CREATE SCHEMA views__data_archive")
        execute("CREATE TABLE views__data_archive.kept AS SELECT 1 AS id")
        execute("CREATE SCHEMA views__old_archive")
        execute("CREATE VIEW views__old_archive.kept AS SELECT 1 AS id")
        sync_views(database="default")
        sync_views(database="default", force=True)
        run_command("sync_views", "--prune", "--database", "default")
        assert fetch("SELECT id FROM views__data_archive.kept") == [(1,)]
        assert fetch("SELECT id FROM views__old_archive.kept") == [(1,)]


class TestRollback:
    def test_rollback_swaps_the_previous_generation_back_as_it_was(
        self, declared_views: list[type]
    ) -> None:
        view = declare_view(
            "Report",
            module=MODULE,
            materialized=False,
            sql="SELECT 1 AS version",
            comment="Version one.",
            grant_select_to=["marketing"],
        )
        declared_views.append(view)
        sync_views(database="default")
        first = catalog()
        before = first.objects["report"]

        view.sql = "SELECT 2 AS version"
        view.comment = "Version two."
        view.grant_select_to = []
        view.security_barrier = True
        sync_views(database="default")
        second = catalog()
        assert fetch("SELECT version FROM views.report") == [(2,)]

        result = run_command("sync_views", "--rollback", "--database", "default")

        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(
            f"Rolled back database 'default': generation {first.generation} is live again "
        )
        assert result.stdout.rstrip().endswith(
            f"the generation it replaced is kept as views__old_{second.generation}."
        )
        assert fetch("SELECT version FROM views.report") == [(1,)]
        after = catalog().objects["report"]
        assert (after.comment, after.grantees, after.options, after.fingerprint) == (
            before.comment,
            before.grantees,
            before.options,
            before.fingerprint,
        )
        assert catalog().generation == first.generation
        # The code still declares version two: the database differs from it now.
        assert plan_sync()
        # Rolling back again goes forward to what the code declares.
        assert run_command("sync_views", "--rollback", "--database", "default").exit_code == 0
        assert fetch("SELECT version FROM views.report") == [(2,)]
        assert not plan_sync()
        assert leftovers() == []

    def test_without_a_previous_generation_it_refuses_and_changes_nothing(self) -> None:
        with override_settings(ORM_VIEWS_KEEP_PREVIOUS_SECONDS=0):
            sync_views(database="default")
            sync_views(database="default", force=True)
        before = live_relations()

        result = run_command("sync_views", "--rollback", "--database", "default")

        assert result.exit_code == 1
        assert result.stderr == (
            "CommandError: Cannot roll back database 'default': there is no previous "
            "generation of the 'views' schema (none was kept since the last swap, or it was "
            "dropped: it is kept for ORM_VIEWS_KEEP_PREVIOUS_SECONDS after a swap, and "
            "`sync_views --prune` drops it). Nothing was changed.\n"
        )
        assert live_relations() == before

    def test_a_previous_generation_that_lost_views_to_a_migration_is_refused(
        self, declared_views: list[type]
    ) -> None:
        execute("CREATE TABLE generations_items (id int, legacy text)")
        execute("INSERT INTO generations_items VALUES (1, 'old')")
        view = declare_view(
            "Items",
            module=MODULE,
            materialized=False,
            sql="SELECT id, legacy FROM generations_items",
        )
        declared_views.append(view)
        sync_views(database="default")
        view.sql = "SELECT id FROM generations_items"
        sync_views(database="default")
        (previous,) = schemas_like(OLD_SCHEMAS)
        # What Django (before 6) does for a RemoveField: DROP COLUMN ... CASCADE.
        execute("ALTER TABLE generations_items DROP COLUMN legacy CASCADE")
        before = live_relations()

        result = run_command("sync_views", "--rollback", "--database", "default")

        assert result.exit_code == 1
        assert result.stderr == (
            f"CommandError: Cannot roll back database 'default': the previous generation "
            f"({previous}) no longer matches the tables: it has lost items, most likely to a "
            "migration since the swap. Nothing was changed. Deploy the code you want to go "
            "back to and run sync_views instead.\n"
        )
        assert live_relations() == before
        assert fetch("SELECT id FROM views.items") == [(1,)]

    def test_other_options_do_not_go_with_rollback_or_prune(self) -> None:
        for given, other in (
            ("--rollback", "--force"),
            ("--prune", "--check"),
            ("--rollback", "--prune"),
        ):
            result = run_command("sync_views", given, other)
            assert result.exit_code == 1
            assert result.stderr.startswith(f"CommandError: {given} does not go with ")
            assert other in result.stderr


class TestWhatUsersSee:
    def test_list_views_names_the_live_and_the_previous_generation(self) -> None:
        sync_views(database="default")
        (result,) = sync_views(database="default", force=True)
        listing = run_command("list_views", "--database", "default").stdout.splitlines()
        assert listing[0] == f"Database 'default', schema 'views' (generation {result.generation}):"
        assert listing[-1].startswith(
            f"Previous generation: {result.previous_generation}, replaced at "
        )
        assert listing[-1].endswith("(`sync_views --rollback` swaps it back in).")

    def test_the_refresh_history_records_the_live_generation(self) -> None:
        sync_views(database="default")
        live = catalog().generation
        (concurrent,) = refresh_materialized_views(["shop_dailysales"], concurrently=True)
        assert concurrent.generation == live
        assert refresh_history("shop_dailysales")[0].generation == live
        # A refresh by swap builds a new generation, and records it.
        (swapped,) = refresh_materialized_views(["shop_dailysales"], concurrently=False)
        assert swapped.generation == catalog().generation != live
        assert refresh_history("shop_dailysales")[0].generation == swapped.generation


def live_relations() -> list[tuple[Any, ...]]:
    return fetch(
        "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname LIKE 'views%%' ORDER BY 1, 2"
    )


def autodiscover_again() -> None:
    """Undo a change of shop_ordertotals' SQL made in a test."""
    shop_views.OrderTotals.sql = shop_views.OrderTotals.sql.replace("FROM /* v2 */", "FROM", 1)


def can_read(role: str, relation: str) -> bool:
    return bool(fetch("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, relation])[0][0])


def has_usage(role: str, schema: str) -> bool:
    return bool(fetch("SELECT has_schema_privilege(%s, %s, 'USAGE')", [role, schema])[0][0])


class TestGrantsOfThePreviousGeneration:
    """No generation grants what the live one does not: the previous one loses, at the
    swap or in place, every grant the code takes away, and a rollback gives them back."""

    @pytest.fixture
    def secret(self, declared_views: list[type]) -> type[Any]:
        """A plain view that the marketing role may read, and no other view of theirs."""
        view = declare_view(
            "Secret",
            module=MODULE,
            materialized=False,
            sql="SELECT 1 AS id",
            grant_select_to=["marketing"],
        )
        declared_views.append(view)
        return view

    def test_a_grant_taken_away_by_a_swap_is_revoked_from_the_previous_generation(
        self, secret: type[Any]
    ) -> None:
        sync_views(database="default")
        assert can_read("marketing", "views.secret")
        secret.sql = "SELECT 2 AS id"
        secret.grant_select_to = []
        (result,) = sync_views(database="default")
        previous = result.previous_generation
        assert previous is not None
        assert not can_read("marketing", "views.secret")
        assert not can_read("marketing", f"{previous}.secret")
        # What it still grants is left as it was.
        assert can_read("analytics", f"{previous}.secret")
        assert can_read("marketing", f"{previous}.shop_customersanitised")
        # A rollback gives back what the swap revoked: the generation as it was.
        assert run_command("sync_views", "--rollback", "--database", "default").exit_code == 0
        assert can_read("marketing", "views.secret")
        # And the generation it retires grants nothing the restored one does not.
        assert fetch("SELECT id FROM views.secret") == [(1,)]

    def test_a_grant_taken_away_in_place_is_revoked_from_the_previous_generation(
        self, secret: type[Any]
    ) -> None:
        sync_views(database="default")
        (swapped,) = sync_views(database="default", force=True)
        previous = swapped.previous_generation
        assert can_read("marketing", f"{previous}.secret")
        secret.grant_select_to = []
        (in_place,) = sync_views(database="default")
        assert in_place.applied and in_place.previous_generation is None
        assert not can_read("marketing", "views.secret")
        assert not can_read("marketing", f"{previous}.secret")
        (marked,) = catalog().previous_generations()
        assert dict(marked.revoked) == {"secret": ("marketing",)}
        run_command("sync_views", "--rollback", "--database", "default")
        assert can_read("marketing", "views.secret")

    def test_a_role_removed_from_the_setting_loses_the_previous_generation_too(
        self, settings: Any
    ) -> None:
        execute('CREATE ROLE "generations reader"')  # rolled back with the test
        settings.ORM_VIEWS_GRANT_SELECT_TO = ["analytics", "generations reader"]
        sync_views(database="default")
        (swapped,) = sync_views(database="default", force=True)
        previous = swapped.previous_generation
        assert previous is not None and has_usage("generations reader", previous)
        settings.ORM_VIEWS_GRANT_SELECT_TO = ["analytics"]
        sync_views(database="default")
        assert not has_usage("generations reader", "views")
        assert not has_usage("generations reader", previous)
        assert not can_read("generations reader", f"{previous}.shop_ordertotals")
        assert has_usage("analytics", previous)
        assert can_read("analytics", f"{previous}.shop_ordertotals")

    def test_nobody_reads_the_storage_schemas_directly(self) -> None:
        sync_views(database="default")
        storage = stored_in("shop_dailysales")
        assert can_read("analytics", "views.shop_dailysales")
        assert not has_usage("analytics", storage)
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL ROLE analytics")
            cursor.execute("SELECT count(*) FROM views.shop_dailysales")
            cursor.execute("SAVEPOINT direct")
            with pytest.raises(Exception, match="permission denied for schema"):
                cursor.execute(f'SELECT count(*) FROM "{storage}".shop_dailysales')
            cursor.execute("ROLLBACK TO SAVEPOINT direct")
            cursor.execute("RESET ROLE")


def test_a_concurrent_refresh_drops_a_previous_generation_that_expired() -> None:
    sync_views(database="default")
    (result,) = sync_views(database="default", force=True)
    assert schemas_like(OLD_SCHEMAS) == [result.previous_generation]
    refresh_materialized_views(["shop_dailysales"], concurrently=True)
    assert schemas_like(OLD_SCHEMAS) == [result.previous_generation]  # not expired yet
    with override_settings(ORM_VIEWS_KEEP_PREVIOUS_SECONDS=0):
        refresh_materialized_views(["shop_dailysales"], concurrently=True)
    assert schemas_like(OLD_SCHEMAS) == []
    assert leftovers() == []


@pytest.mark.django_db(transaction=True)
def test_a_stored_view_a_reader_holds_is_left_for_the_next_prune(
    clean_views_schema: None, declared_views: list[type]
) -> None:
    changing = declare_view("Changing", module=MODULE, sql="SELECT 1 AS version")
    declared_views.append(changing)
    sync_views(database="default")
    old_storage = stored_in("changing")
    changing.sql = "SELECT 2 AS version"
    sync_views(database="default")
    # Someone (the owner: nobody else may) reads the old stored copy directly.
    with open_transaction(f'SELECT version FROM "{old_storage}".changing'):
        done = run_command("sync_views", "--prune", "--database", "default")
        assert done.exit_code == 0, done.stderr
        # The previous generation went; the stored copy the reader holds stayed, and
        # the prune does not claim it.
        assert schemas_like(OLD_SCHEMAS) == []
        assert "stored view" not in done.stdout
        assert "changing" in relations_in(old_storage)
    assert fetch("SELECT version FROM views.changing") == [(2,)]
    # Once the reader is gone, the next prune (or sync) drops it.
    done = run_command("sync_views", "--prune", "--database", "default")
    assert done.stdout.rstrip().endswith("; 1 stored view(s).")
    assert "changing" not in relations_in(old_storage)
    assert leftovers() == []


def test_odd_names_cross_generations_are_rolled_back_and_pruned(
    declared_views: list[type],
) -> None:
    # A quote, spaces and a capital in the prefix, accents in the class name.
    odd = declare_view(
        "VentesÉté", module=MODULE, prefix='Q1 "Odd"', sql="SELECT 1 AS version", pk_field="version"
    )
    quoted = 'views."Q1 ""Odd""_ventesété"'
    reader = declare_view(
        "OddReader", module=MODULE, materialized=False, sql=f"SELECT version FROM {quoted}"
    )
    declared_views += [odd, reader]
    sync_views(database="default")
    assert fetch(f"SELECT version FROM {quoted}") == [(1,)]
    odd.sql = "SELECT 2 AS version"
    sync_views(database="default")
    assert fetch("SELECT version FROM views.oddreader") == [(2,)]
    assert run_command("sync_views", "--rollback", "--database", "default").exit_code == 0
    assert fetch("SELECT version FROM views.oddreader") == [(1,)]
    assert run_command("sync_views", "--rollback", "--database", "default").exit_code == 0
    assert run_command("sync_views", "--prune", "--database", "default").exit_code == 0
    assert fetch(f"SELECT version FROM {quoted}") == [(2,)]
    assert stored_in('Q1 "Odd"_ventesété').startswith("views__data_")
    assert leftovers() == []
    assert not plan_sync()


def test_a_materialized_view_of_an_earlier_layout_is_stored_apart_by_the_next_sync() -> None:
    """Versions before generations kept materialized views in the views schema itself:
    the next sync stores each one apart (built once more), then leaves it be."""
    sync_views(database="default")
    plan = plan_sync(database="default")
    item = plan.rendered["shop_dailysales"]
    marker = owner_marker(plan.fingerprints["shop_dailysales"], ())
    # The view as such a version left it: a real materialized view, marked, no storage.
    execute("DROP VIEW views.shop_dailysales CASCADE")
    for statement in item.create_statements("views"):
        execute(statement)
    execute('COMMENT ON RULE "_RETURN" ON views.shop_dailysales IS ' + quote_literal(marker))
    assert relations_in("views")["shop_dailysales"] == "m"

    reasons = {action.name: action.reason for action in plan_sync(database="default").changes}
    assert reasons["shop_dailysales"] == (
        "stored apart from the generations from now on (built once more)"
    )
    sync_views(database="default")
    assert stored_in("shop_dailysales").startswith("views__data_")
    assert fetch("SELECT relkind FROM pg_class WHERE oid = 'views.shop_dailysales'::regclass") == [
        ("v",)
    ]
    assert not plan_sync()


def test_what_others_put_in_a_storage_schema_is_never_dropped() -> None:
    sync_views(database="default")
    first_storage = stored_in("shop_dailysales")
    # Someone's view and function next to the package's stored views.
    execute(f'CREATE VIEW "{first_storage}".by_hand AS SELECT 1 AS id')
    execute(
        f'CREATE FUNCTION "{first_storage}".by_hand_f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$'
    )
    sync_views(database="default", force=True)
    result = run_command("sync_views", "--prune", "--database", "default")
    assert result.exit_code == 0, result.stderr
    # The package's stored views went; what it did not create stayed, with the schema.
    assert relations_in(first_storage) == {"by_hand": "v"}
    assert fetch(f'SELECT "{first_storage}".by_hand_f()') == [(1,)]
    assert fetch("SELECT count(*) FROM views.shop_dailysales")[0][0] >= 0
    # A later sync does not trip over them either.
    (later,) = sync_views(database="default", force=True)
    assert later.applied
    assert relations_in(first_storage) == {"by_hand": "v"}
    # With only the function left, the schema is still someone's: a no-op sync leaves it,
    # in its one round trip.
    execute(f'DROP VIEW "{first_storage}".by_hand')
    run_command("sync_views", "--prune", "--database", "default")
    with CaptureQueriesContext(connection) as queries:
        (no_op,) = sync_views(database="default")
    assert not no_op.applied and len(queries.captured_queries) == 1
    assert first_storage in schemas_like(DATA_SCHEMAS)


def test_a_stored_view_dropped_by_hand_is_built_again_and_never_rolled_back_to(
    declared_views: list[type],
) -> None:
    changing = declare_view("Changing", module=MODULE, sql="SELECT 1 AS version")
    declared_views.append(changing)
    sync_views(database="default")
    old_storage = stored_in("changing")
    changing.sql = "SELECT 2 AS version"
    sync_views(database="default")
    (previous,) = schemas_like(OLD_SCHEMAS)
    # The previous generation's stored copy, dropped by hand (with what points to it).
    execute(f'DROP MATERIALIZED VIEW "{old_storage}".changing CASCADE')
    result = run_command("sync_views", "--rollback", "--database", "default")
    assert result.exit_code == 1
    assert f"the previous generation ({previous}) no longer matches the tables: it has lost " in (
        result.stderr
    )
    assert "changing" in result.stderr
    # The live one, dropped by hand: the next sync says why it builds it again.
    execute(f'DROP MATERIALIZED VIEW "{stored_in("changing")}".changing CASCADE')
    execute("CREATE VIEW views.changing AS SELECT 0 AS version")
    execute(
        'COMMENT ON RULE "_RETURN" ON views.changing IS '
        + quote_literal(
            owner_marker(plan_sync().fingerprints["changing"], (), "views__data_00000000")
        )
    )
    reasons = {action.name: action.reason for action in plan_sync().changes}
    assert reasons["changing"] == "the stored view it points to is gone"
    sync_views(database="default")
    assert fetch("SELECT version FROM views.changing") == [(2,)]
    assert not plan_sync()
