"""The analysts' schema: comments BI tools show, view options, per-view grants and
lineage, each against a real PostgreSQL."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from django.db import connection, models

from django_orm_views import PostgresViewFromSQL, ReadableViewFromSQL
from django_orm_views.registry import find_problems
from django_orm_views.views import declared_classes
from test_project.shop import postgres_views as shop_views

from .conftest import ANALYTICS_ROLE, create_role
from .utils import declare_view, fetch, run_command, schema_state

pytestmark = pytest.mark.django_db

MODULE = "tests.test_analysts"


def sync(*args: str) -> str:
    result = run_command("sync_views", "--database", "default", *args)
    assert result.exit_code == 0, result.stderr
    assert run_command("sync_views", "--check", "--database", "default").exit_code == 0
    return result.stdout


def comment_of(relation: str) -> str | None:
    value = fetch("SELECT obj_description(%s::regclass, 'pg_class')", [relation])[0][0]
    return None if value is None else str(value)


def column_comment_of(relation: str, column: str) -> str | None:
    value = fetch(
        "SELECT col_description(%s::regclass, a.attnum) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attname = %s",
        [relation, relation, column],
    )[0][0]
    return None if value is None else str(value)


def oid_of(relation: str) -> int:
    return int(fetch("SELECT %s::regclass::oid", [relation])[0][0])


def can_select(role: str, relation: str) -> bool:
    return bool(fetch("SELECT has_table_privilege(%s, %s, 'SELECT')", [role, relation])[0][0])


class Documented(ReadableViewFromSQL):
    """Customers for the marketing team.

    One row a customer; personal data removed.
    """

    prefix = "analysts"
    sql = "SELECT id, split_part(email, '@', 2) AS email_domain, country FROM shop_customer"
    column_comments = {"country": "ISO 3166 code, upper case."}
    id = models.IntegerField(primary_key=True)
    email_domain = models.CharField(max_length=254, db_comment="The part after the @.")
    country = models.CharField(max_length=2, help_text="Overridden by column_comments.")

    class Meta:
        app_label = "shop"


declared_classes.remove(Documented)


@pytest.fixture
def documented(declared_views: list[type]) -> type[Any]:
    declared_views.append(Documented)
    return Documented


class TestComments:
    def test_the_catalog_holds_exactly_the_declared_texts(self, documented: type[Any]) -> None:
        sync()
        relation = "views.analysts_documented"
        assert comment_of(relation) == inspect.cleandoc(Documented.__doc__ or "")
        assert column_comment_of(relation, "email_domain") == "The part after the @."
        assert column_comment_of(relation, "country") == "ISO 3166 code, upper case."
        assert column_comment_of(relation, "id") is None
        # test_project's views are documented by their docstrings too.
        assert comment_of("views.shop_ordertotals") == shop_views.OrderTotals.__doc__

    def test_comment_attribute_wins_and_empty_means_none(self, declared_views: list[type]) -> None:
        declared_views.append(
            declare_view(
                "Overridden",
                module=MODULE,
                materialized=True,
                prefix="analysts",
                sql="SELECT 1 AS id",
                __doc__="The docstring.",
                comment="The comment, for BI tools.",
            )
        )
        declared_views.append(
            declare_view(
                "Silent",
                module=MODULE,
                materialized=False,
                prefix="analysts",
                sql="SELECT 1 AS id",
                __doc__="Not shown.",
                comment="",
            )
        )
        sync()
        assert comment_of("views.analysts_overridden") == "The comment, for BI tools."
        assert comment_of("views.analysts_silent") is None

    def test_a_comment_change_alone_is_applied_in_place(self, declared_views: list[type]) -> None:
        def declare(text: str) -> None:
            declared_views[:] = [
                view for view in declared_views if getattr(view, "__name__", "") != "Noted"
            ]
            declared_views.append(
                declare_view(
                    "Noted",
                    module=MODULE,
                    prefix="analysts",
                    pk_field="id",
                    sql="SELECT 1 AS id, 2 AS total",
                    comment=text,
                    column_comments={"total": f"{text} (total)"},
                )
            )

        declare("First text")
        sync()
        relation = "views.analysts_noted"
        oid = oid_of(relation)
        declare("Second text")
        check = run_command("sync_views", "--check", "--database", "default")
        assert check.exit_code == 1
        assert "update materialized view analysts_noted" in check.stdout
        assert "set its comments" in check.stdout
        output = sync("--verbosity", "2")
        assert "0 replaced" in output
        assert oid_of(relation) == oid
        assert comment_of(relation) == "Second text"
        assert column_comment_of(relation, "total") == "Second text (total)"


def test_a_column_comment_for_no_column_names_the_fix(declared_views: list[type]) -> None:
    sync()
    before = schema_state()
    declared_views.append(
        declare_view(
            "Misnamed",
            module=MODULE,
            materialized=False,
            prefix="analysts",
            sql="SELECT 1 AS id",
            column_comments={"idd": "A typo."},
        )
    )
    result = run_command("sync_views", "--database", "default")
    assert result.exit_code == 1
    assert "Misnamed (tests.test_analysts)" in result.stderr
    assert 'column "idd"' in result.stderr
    assert "Name a column of the view in its `column_comments`" in result.stderr
    assert schema_state() == before


def test_an_option_the_server_lacks_fails_before_anything_changes(
    declared_views: list[type],
) -> None:
    sync()
    before = schema_state()
    declared_views.append(
        declare_view(
            "Invoker",
            module=MODULE,
            materialized=False,
            prefix="analysts",
            sql="SELECT 1 AS id",
            security_invoker=True,
        )
    )
    # The server's major as Django read it, set lower: security_invoker came with 15.
    real = connection.pg_version  # type: ignore[attr-defined]
    connection.pg_version = 140013  # type: ignore[attr-defined]
    try:
        result = run_command("sync_views", "--database", "default")
    finally:
        connection.pg_version = real  # type: ignore[attr-defined]
    assert result.exit_code == 1
    assert result.stderr == (
        "CommandError: View Invoker (tests.test_analysts) sets `security_invoker`, which "
        "PostgreSQL 14 does not have (it needs PostgreSQL 15 or newer). Remove it, or "
        "upgrade the server. Nothing was changed.\n"
    )
    assert schema_state() == before


def test_a_diff_of_a_view_postgresql_refuses_names_it_and_changes_nothing(
    declared_views: list[type],
) -> None:
    sync()
    before = schema_state()
    original = shop_views.OrderTotals.sql
    shop_views.OrderTotals.sql = original.replace("o.status,", "o.no_such_column,")
    try:
        result = run_command("sync_views", "--check", "--diff", "--database", "default")
    finally:
        shop_views.OrderTotals.sql = original
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "CommandError: Cannot show the diff of database 'default': PostgreSQL refused a "
        "declared view (column o.no_such_column does not exist"
    )
    assert result.stderr.rstrip().endswith("Nothing was changed.")
    assert schema_state() == before
    assert fetch("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'views\\_\\_diff%%'") == [
        (0,)
    ]


def test_list_views_shows_a_view_whose_grants_differ_as_outdated() -> None:
    sync()
    with connection.cursor() as cursor:
        cursor.execute('REVOKE SELECT ON views.shop_ordertotals FROM "analytics"')
    rows = json.loads(run_command("list_views", "--database", "default", "--format", "json").stdout)
    states = {row["name"]: row["state"] for row in rows}
    assert states["shop_ordertotals"] == "outdated"
    assert states["shop_paidorders"] == "in sync"
    output = sync("--verbosity", "2")
    assert "  update  view shop_ordertotals" in output


class TestOptions:
    def test_options_are_set_kept_and_listed(self, declared_views: list[type]) -> None:
        declared_views.append(
            declare_view(
                "Filtered",
                module=MODULE,
                materialized=False,
                prefix="analysts",
                sql="SELECT id, country FROM shop_customer WHERE country = 'FR'",
                security_barrier=True,
                security_invoker=True,
            )
        )
        sync()
        options = "SELECT reloptions FROM pg_class WHERE oid = 'views.analysts_filtered'::regclass"
        expected = [(["security_barrier=true", "security_invoker=true"],)]
        assert fetch(options) == expected
        sync("--force")
        assert fetch(options) == expected
        rows = json.loads(
            run_command("list_views", "--database", "default", "--format", "json").stdout
        )
        listed = {row["name"]: row for row in rows}
        assert listed["analysts_filtered"]["options"] == [
            "security_barrier=true",
            "security_invoker=true",
        ]

    def test_an_option_change_rebuilds_the_view(self, declared_views: list[type]) -> None:
        view = declare_view(
            "Toggled", module=MODULE, materialized=False, prefix="analysts", sql="SELECT 1 AS id"
        )
        declared_views.append(view)
        sync()
        view.security_barrier = True
        check = run_command("sync_views", "--check", "--database", "default")
        assert "replace view analysts_toggled" in check.stdout
        sync()
        assert fetch(
            "SELECT reloptions FROM pg_class WHERE oid = 'views.analysts_toggled'::regclass"
        ) == [(["security_barrier=true"],)]

    def test_options_on_a_materialized_view_are_a_declaration_error(self) -> None:
        view = declare_view(
            "Wrong", module=MODULE, prefix="analysts", sql="SELECT 1 AS id", security_barrier=True
        )
        declared_classes.remove(view)
        problems = find_problems([view])
        assert [problem.id for problem in problems] == ["orm_views.E008"]
        assert "an option of plain views only" in problems[0].message


class TestGrants:
    def test_per_view_grants_add_to_the_setting_and_are_revoked_when_removed(
        self, declared_views: list[type]
    ) -> None:
        create_role("per_view_reader")
        view = declare_view(
            "Shared",
            module=MODULE,
            materialized=False,
            prefix="analysts",
            sql="SELECT 1 AS id",
            grant_select_to=["per_view_reader"],
        )
        declared_views.append(view)
        sync()
        assert can_select("per_view_reader", "views.analysts_shared")
        assert can_select(ANALYTICS_ROLE, "views.analysts_shared")
        assert not can_select("per_view_reader", "views.shop_ordertotals")
        assert fetch("SELECT has_schema_privilege('per_view_reader', 'views', 'USAGE')") == [
            (True,)
        ]
        # 20 syncs that rebuild everything: the role never loses anything in between.
        for _ in range(20):
            sync("--force")
            assert can_select("per_view_reader", "views.analysts_shared")
        view.grant_select_to = []
        check = run_command("sync_views", "--check", "--database", "default")
        assert "revoke SELECT from per_view_reader" in check.stdout
        sync()
        assert not can_select("per_view_reader", "views.analysts_shared")
        assert fetch("SELECT has_schema_privilege('per_view_reader', 'views', 'USAGE')") == [
            (False,)
        ]

    def test_an_unknown_role_fails_before_anything_changes(
        self, declared_views: list[type]
    ) -> None:
        sync()
        declared_views.append(
            declare_view(
                "Ghostly",
                module=MODULE,
                materialized=False,
                prefix="analysts",
                sql="SELECT 1 AS id",
                grant_select_to=["no_such_role_here"],
            )
        )
        for options in ((), ("--check",), ("--dry-run",)):
            result = run_command("sync_views", "--database", "default", *options)
            assert result.exit_code == 1, options
            assert (
                "'no_such_role_here' (from grant_select_to of Ghostly (tests.test_analysts))"
                in result.stderr
            )
        assert "Nothing was changed" in result.stderr
        assert fetch("SELECT to_regclass('views.analysts_ghostly')") == [(None,)]

    def test_hidden_with_grants_is_a_declaration_error(self) -> None:
        view = declare_view(
            "Secret",
            module=MODULE,
            materialized=False,
            sql="SELECT 1 AS id",
            hidden=True,
            grant_select_to=["analytics"],
        )
        declared_classes.remove(view)
        assert [problem.id for problem in find_problems([view])] == ["orm_views.E007"]


class TestLineage:
    def test_json_lists_what_each_view_reads(self) -> None:
        sync()
        rows = json.loads(
            run_command("list_views", "--database", "default", "--format", "json").stdout
        )
        listed = {row["name"]: row for row in rows}
        revenue = listed["shop_customerrevenue"]
        assert revenue["depends_on"] == ["shop_ordertotals"]
        assert revenue["reads_tables"] == ["public.shop_customer"]
        assert "public.shop_customer.country" in revenue["reads_columns"]
        totals = listed["shop_ordertotals"]
        assert totals["depends_on"] == []
        assert totals["reads_tables"] == ["public.shop_order", "public.shop_orderline"]
        assert "public.shop_orderline.unit_price" in totals["reads_columns"]
        assert listed["shop_countryrevenue"]["depends_on"] == ["shop_customerrevenue"]

    def test_graphs(self) -> None:
        sync()
        graph = run_command("list_views", "--database", "default", "--graph").stdout
        lines = graph.splitlines()
        assert lines[0] == "flowchart LR"
        assert "    t_public_shop_order --> v_views_shop_ordertotals" in lines
        assert "    v_views_shop_ordertotals --> v_views_shop_customerrevenue" in lines
        assert '    t_public_shop_order[("public.shop_order")]' in lines
        dot = run_command("list_views", "--database", "default", "--graph", "--format", "dot")
        assert dot.stdout.startswith("digraph views {")
        assert '"views.shop_ordertotals" -> "views.shop_customerrevenue";' in dot.stdout

    def test_reads_lists_direct_and_indirect_readers(self) -> None:
        sync()
        output = run_command(
            "list_views", "--database", "default", "--reads", "shop_orderline"
        ).stdout
        assert output.splitlines() == [
            "Database 'default': views of 'views' that read public.shop_orderline:",
            "  shop_dailysales (materialized view, directly)",
            "  shop_ordersummary (view, directly)",
            "  shop_ordertotals (view, directly)",
            "  shop_productsales (materialized view, directly)",
            "  shop_countryrevenue (view, through other views)",
            "  shop_customerrevenue (view, through other views)",
        ]
        column = run_command(
            "list_views", "--database", "default", "--reads", "public.shop_customer.country"
        ).stdout
        assert "shop_customerrevenue (view, directly)" in column
        assert "shop_countryrevenue (view, through other views)" in column
        assert "shop_ordertotals" not in column
        missing = run_command("list_views", "--database", "default", "--reads", "no_such.thing")
        assert missing.exit_code == 1
        assert "No table or column 'no_such.thing'" in missing.stderr

    def test_reads_as_json(self) -> None:
        sync()
        output = run_command(
            "list_views",
            "--database",
            "default",
            "--reads",
            "shop_customer.country",
            "--format",
            "json",
        ).stdout
        rows = json.loads(output)
        assert {
            "database": "default",
            "reads": "public.shop_customer.country",
            "name": "shop_customerrevenue",
            "kind": "view",
            "direct": True,
        } in rows
        assert all(row["name"] != "shop_ordertotals" for row in rows)

    def test_graph_and_format_must_agree(self) -> None:
        result = run_command("list_views", "--format", "dot")
        assert result.exit_code == 1
        assert "--format mermaid and dot go with --graph" in result.stderr


def test_a_plain_view_of_the_package_is_unchanged_by_a_user_comment_only_until_sync(
    declared_views: list[type],
) -> None:
    class Plain(PostgresViewFromSQL):
        """Plain."""

        prefix = "analysts"
        sql = "SELECT 1 AS id"

    sync()
    with connection.cursor() as cursor:
        cursor.execute("COMMENT ON COLUMN views.analysts_plain.id IS 'by hand'")
    assert run_command("sync_views", "--check", "--database", "default").exit_code == 1
    sync()
    assert column_comment_of("views.analysts_plain", "id") is None


class TestDiffs:
    def test_check_and_dry_run_print_the_definition_diff_of_replaced_views(self) -> None:
        sync()
        original = shop_views.OrderTotals.sql
        shop_views.OrderTotals.sql = original.replace(
            "count(l.id) AS line_count", "count(DISTINCT l.id) AS line_count"
        )
        try:
            check = run_command("sync_views", "--check", "--diff", "--database", "default")
            dry_run = run_command("sync_views", "--dry-run", "--diff", "--database", "default")
        finally:
            shop_views.OrderTotals.sql = original
        assert check.exit_code == 1
        lines = check.stdout.splitlines()
        assert "--- views.shop_ordertotals (database)" in lines
        assert "+++ views.shop_ordertotals (declared)" in lines
        assert "-    count(l.id) AS line_count," in lines
        assert "+    count(DISTINCT l.id) AS line_count," in lines
        # Only the real change shows: the rest of the definition is the same on both sides,
        # and views rebuilt only because they read the changed one have empty diffs.
        assert sum(1 for line in lines if line.startswith(("-", "+"))) == 4
        assert dry_run.exit_code == 0
        assert "+    count(DISTINCT l.id) AS line_count," in dry_run.stdout.splitlines()
        # Nothing was left behind.
        assert fetch(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'views\\_\\_diff%%'"
        ) == [(0,)]

    def test_options_and_indexes_show_in_the_diff(self, declared_views: list[type]) -> None:
        view = declare_view(
            "Indexed",
            module=MODULE,
            prefix="analysts",
            pk_field="id",
            sql="SELECT g AS id FROM generate_series(1, 3) AS g",
        )
        declared_views.append(view)
        sync()
        view.pk_field = ("id",)
        view.sql = "SELECT g AS id, g * 2 AS twice FROM generate_series(1, 3) AS g"
        check = run_command("sync_views", "--check", "--diff", "--database", "default")
        lines = check.stdout.splitlines()
        # PostgreSQL writes the column as g.g (15) or g (18): the change shows either way.
        assert any(line.startswith("+") and line.endswith("* 2 AS twice") for line in lines)
        assert " -- materialized view" in lines
        # The index is the same on both sides, whichever schema it lives in.
        assert " CREATE UNIQUE INDEX analysts_indexed_id ON analysts_indexed USING btree (id)" in (
            lines
        )

    def test_diff_needs_check_or_dry_run(self) -> None:
        result = run_command("sync_views", "--diff")
        assert result.exit_code == 1
        assert "--diff goes with --check or --dry-run" in result.stderr
