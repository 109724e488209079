"""Nothing lost, nobody let in: whatever users write (role names, SQL, literals) reaches
PostgreSQL meaning exactly what they wrote, or is refused with a message that names it."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test.utils import CaptureQueriesContext

from django_orm_views.compiler import parse_select, rewrite_schema

from .utils import declare_view, fetch, run_command

MODULE = "tests.test_input_safety"


def quoted(name: str) -> str:
    """The test's own identifier quoting, independent of the package's."""
    return '"' + name.replace('"', '""') + '"'


def create_roles(*names: str) -> None:
    """Roles for one test: created in its transaction, so gone when it rolls back."""
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"CREATE ROLE {quoted(name)} NOLOGIN")


def read_as(role: str, sql: str) -> str:
    """Run ``sql`` as ``role``: 'ok', or the first line of PostgreSQL's error."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL ROLE {quoted(role)}")
            cursor.execute(sql)
            cursor.fetchall()
            cursor.execute("RESET ROLE")
    except DatabaseError as error:
        return str(error).splitlines()[0]
    return "ok"


PROBE = 'SELECT * FROM "views"."input_probe"'


@pytest.fixture
def probe_view(declared_views: list[type]) -> type[Any]:
    """One plain view, granted to whatever roles the test configures."""
    return declare_view(
        "Probe", module=MODULE, materialized=False, prefix="input", sql="SELECT 1 AS one"
    )


# Point 12: any SQL PostgreSQL accepts as a query syncs ------------------------------------

ACCEPTED_SQL = {
    "trailing line comment": "SELECT 1 AS one -- the answer",
    "trailing comment with a quote": "SELECT 1 AS one -- it's fine",
    "semicolon": "SELECT 1 AS one;",
    "semicolon then blanks": "SELECT 1 AS one ;  \n\t\n",
    "semicolon then comments": "SELECT 1 AS one; -- done\n/* really */ ;",
    "comment before the semicolon": "SELECT 1 AS one -- done\n;",
    "block comments": "SELECT /* a */ 1 /* b */ AS one /* c */",
    "leading comments": "-- a view\n/* of one row */\nSELECT 1 AS one",
    "CTE": "WITH t AS (SELECT 1 AS one) SELECT one FROM t -- from the CTE",
    "VALUES": "VALUES (1) -- one row",
    "parenthesised": "(SELECT 1 AS one) -- in brackets",
    "multibyte comment": "SELECT 'é' AS e, 1 AS one -- é",
}


@pytest.mark.django_db
class TestAcceptedSql:
    @pytest.mark.parametrize("materialized", [False, True], ids=["view", "materialized"])
    @pytest.mark.parametrize("sql", ACCEPTED_SQL.values(), ids=ACCEPTED_SQL.keys())
    def test_syncs_and_reads(
        self, declared_views: list[type], sql: str, materialized: bool
    ) -> None:
        declare_view("Accepted", module=MODULE, materialized=materialized, prefix="input", sql=sql)
        # Two views, so that statements are batched and one's text follows the other's.
        declare_view(
            "Reader",
            module=MODULE,
            materialized=materialized,
            prefix="input",
            sql='SELECT count(*) AS n FROM views.input_accepted -- reads "input_accepted"',
        )
        result = run_command("sync_views", database="default")
        assert result.exit_code == 0, result.stderr
        assert fetch('SELECT count(*) FROM "views"."input_accepted"') == [(1,)]
        assert fetch('SELECT n FROM "views"."input_reader"') == [(1,)]
        # A second sync finds nothing to do: the stored definition is stable.
        assert run_command("sync_views", "--check", database="default").exit_code == 0

    def test_the_kept_text_is_the_statement_alone(self) -> None:
        assert parse_select("  SELECT 1 ;; ").sql == "SELECT 1"
        assert parse_select("-- lead\nSELECT 1 -- trail").sql == "SELECT 1"
        assert parse_select("/* a */ (SELECT 1) /* b */ ; -- c").sql == "(SELECT 1)"
        assert parse_select("SELECT 1 -- x\n /* y */ FROM t -- z").sql == (
            "SELECT 1 -- x\n /* y */ FROM t"
        )

    def test_references_are_located_in_the_kept_text(self) -> None:
        sql = "/* é */ SELECT * FROM views.a -- views.a"
        parsed = parse_select(sql)
        assert parsed.sql == "SELECT * FROM views.a"
        (reference,) = parsed.schema_references("views")
        assert parsed.sql[reference.schema_start : reference.schema_end] == "views"
        assert rewrite_schema(sql, "views", "views__staging", ["a"]) == (
            '/* é */ SELECT * FROM "views__staging".a -- views.a'
        )


@pytest.mark.django_db
class TestRefusedSql:
    def sync_error(self) -> str:
        with CaptureQueriesContext(connection) as queries:
            result = run_command("sync_views", database="default")
        assert result.exit_code == 1
        # Refused while rendering: no statement reached the database.
        assert len(queries) == 0
        return result.stderr

    def test_more_than_one_statement_names_the_class_and_the_fix(
        self, declared_views: list[type]
    ) -> None:
        declare_view("Two", module=MODULE, sql="SELECT 1 AS one; SELECT 2 AS two -- end")
        assert self.sync_error() == (
            "CommandError: View Two (tests.test_input_safety) must have exactly one SELECT (or "
            "VALUES) statement as its SQL; found 2 statement(s). Keep one query: combine the "
            "others into it (WITH ..., UNION, a subquery) or declare them as views of their "
            "own.\n"
        )

    def test_comments_only(self, declared_views: list[type]) -> None:
        declare_view("Empty", module=MODULE, sql="-- nothing here\n/* at all */;")
        assert "found 0 statement(s). Set `sql` to the query the view shows." in (self.sync_error())

    def test_a_statement_that_is_not_a_query(self, declared_views: list[type]) -> None:
        declare_view("Deleting", module=MODULE, sql="DELETE FROM shop_customer -- oops")
        assert self.sync_error() == (
            "CommandError: View Deleting (tests.test_input_safety) has a Delete statement as "
            "its SQL, not a query. Set `sql` to a SELECT (or VALUES, or WITH ... SELECT) "
            "statement.\n"
        )

    def test_select_into(self, declared_views: list[type]) -> None:
        declare_view("Into", module=MODULE, sql="SELECT 1 AS one INTO copy")
        assert "Into (tests.test_input_safety) has SELECT ... INTO as its SQL" in (
            self.sync_error()
        )

    def test_a_nul_in_the_sql(self, declared_views: list[type]) -> None:
        declare_view("Nul", module=MODULE, sql="SELECT 'a\0b' AS a")
        assert self.sync_error() == (
            "CommandError: View Nul (tests.test_input_safety) has a NUL character in its SQL, "
            "which PostgreSQL does not accept. Remove it (a column that may hold one needs a "
            "bytea value).\n"
        )

    def test_a_nul_in_the_params(self, declared_views: list[type]) -> None:
        declare_view("NulParam", module=MODULE, sql="SELECT %s AS a", params=["a\0b"])
        assert "NulParam (tests.test_input_safety) has a NUL character in its params" in (
            self.sync_error()
        )
