"""Nothing lost, nobody let in: whatever users write (role names, SQL, literals) reaches
PostgreSQL meaning exactly what they wrote, or is refused with a message that names it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Index, Q
from django.db.utils import DatabaseError
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_orm_views import InvalidViewError, sync_views
from django_orm_views.compiler import parse_select
from django_orm_views.sql import quote_literal, quote_role

from .utils import declare_view, fetch, rewrite_schema, run_command, stored_in

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


# Point 4: "PUBLIC" is a role; only "public" is the keyword -------------------------------


@pytest.mark.django_db
class TestPublic:
    def test_a_role_named_PUBLIC_is_granted_as_that_role_not_as_everyone(
        self, probe_view: type[Any]
    ) -> None:
        create_roles("PUBLIC", "input_bystander")
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=["PUBLIC"]):
            sync_views(database="default")
        assert read_as("PUBLIC", PROBE) == "ok"
        assert read_as("input_bystander", PROBE) == "permission denied for schema views"
        # Nothing in the schema is granted to the PUBLIC pseudo-role (grantee 0).
        assert fetch(
            "SELECT count(*) FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'views' AND a.grantee = 0"
        ) == [(0,)]
        assert fetch(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.relnamespace = 'views'::regnamespace AND a.grantee = 0"
        ) == [(0,)]

    def test_lowercase_public_is_the_keyword(self, probe_view: type[Any]) -> None:
        create_roles("input_bystander")
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=["public"]):
            sync_views(database="default")
        assert read_as("input_bystander", PROBE) == "ok"

    def test_quote_role(self) -> None:
        assert quote_role("public") == "PUBLIC"
        assert quote_role("PUBLIC") == '"PUBLIC"'
        assert quote_role("Public") == '"Public"'
        assert quote_role('o"brien') == '"o""brien"'


# Role names with odd characters are granted exactly -------------------------------------

ODD_ROLES = ['it\'s "Odd" Role', "Mixed Case", "per%cent %s", "trailing "]


@pytest.mark.django_db
class TestOddRoleNames:
    @pytest.mark.parametrize("role", ODD_ROLES)
    def test_from_the_setting(self, probe_view: type[Any], role: str) -> None:
        create_roles(role, "input_bystander")
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=[role]):
            result = run_command("sync_views", database="default")
        assert result.exit_code == 0, result.stderr
        assert read_as(role, PROBE) == "ok"
        assert read_as("input_bystander", PROBE) == "permission denied for schema views"

    @pytest.mark.parametrize("role", ODD_ROLES)
    def test_from_the_option(self, probe_view: type[Any], role: str) -> None:
        # A role whose name differs only by case or a blank must not be let in either.
        lookalike = role.strip().lower() if role.strip().lower() != role else role.upper()
        create_roles(role, lookalike)
        with override_settings(ORM_VIEWS_GRANT_SELECT_TO=[]):
            result = run_command(
                "sync_views", "--grant-select-permissions-to-user", role, database="default"
            )
        assert result.exit_code == 0, result.stderr
        assert read_as(role, PROBE) == "ok"
        assert read_as(lookalike, PROBE) == "permission denied for schema views"


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

    def test_a_nul_in_an_index_condition(self, declared_views: list[type]) -> None:
        declare_view(
            "NulIndex",
            module=MODULE,
            sql="SELECT 'a' AS label",
            indexes=[Index(fields=["label"], name="input_nul", condition=Q(label="a\0b"))],
        )
        with pytest.raises(InvalidViewError, match=r"NulIndex \(tests.test_input_safety\).*NUL"):
            sync_views(database="default")


# Point 15: literals mean the same whatever standard_conforming_strings says -----------

TRICKY_VALUES = [
    "it's a \\ back\\slash",
    "\\'; SELECT 1; --",
    "ends with a backslash \\",
    "\\\\ two, and \\n not a newline",
    "plain 'quoted'",
]


@pytest.fixture(params=["on", "off"])
def standard_conforming_strings(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's transaction runs with the setting on, then off."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL escape_string_warning = off")
        cursor.execute(f"SET LOCAL standard_conforming_strings = {request.param}")
    yield str(request.param)


@pytest.mark.django_db
class TestLiterals:
    @pytest.mark.parametrize("value", TRICKY_VALUES)
    def test_a_literal_round_trips(self, standard_conforming_strings: str, value: str) -> None:
        assert fetch(f"SELECT {quote_literal(value)}") == [(value,)]

    def test_an_index_condition_round_trips(
        self, declared_views: list[type], standard_conforming_strings: str
    ) -> None:
        value = TRICKY_VALUES[0] + TRICKY_VALUES[1]
        declare_view(
            "Labels",
            module=MODULE,
            prefix="input",
            sql="SELECT %s AS label UNION ALL SELECT 'other'",
            params=[value],
            indexes=[Index(fields=["label"], name="input_tricky", condition=Q(label=value))],
        )
        sync_views(database="default")
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL standard_conforming_strings = on")
        # The predicate PostgreSQL stored, printed as it prints any text constant.
        expected = "(label = '" + value.replace("'", "''") + "'::text)"
        assert fetch(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = %s::regclass",
            [f'"{stored_in("input_labels")}"."input_tricky"'],
        ) == [(expected,)]
        # And it holds for the row that has that value, only.
        assert fetch('SELECT label FROM "views"."input_labels" WHERE label = %s', [value]) == [
            (value,)
        ]

    def test_a_nul_cannot_be_a_literal(self) -> None:
        with pytest.raises(ValueError, match="NUL"):
            quote_literal("a\0b")


@pytest.mark.django_db
def test_a_nul_in_a_role_given_as_an_option(probe_view: type[Any]) -> None:
    with CaptureQueriesContext(connection) as queries:
        result = run_command(
            "sync_views", "--grant-select-permissions-to-user", "ana\0lytics", database="default"
        )
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "CommandError: --grant-select-permissions-to-user names a role that cannot exist: "
        "'ana\\x00lytics' contains a NUL character"
    )
    assert len(queries) == 0


@pytest.mark.django_db
def test_the_swap_runs_under_the_swap_timeout_and_restores_it(probe_view: type[Any]) -> None:
    seen = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if "RENAME TO" in sql:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('statement_timeout'), "
                    "current_setting('idle_in_transaction_session_timeout')"
                )
                seen.append(cursor.fetchone())
        return result

    with override_settings(ORM_VIEWS_SWAP_TIMEOUT_MS=1234), connection.execute_wrapper(spy):
        sync_views(database="default")
    assert seen == [("1234ms", "1234ms")]
    # Inside the test's transaction the sync gives the settings back.
    assert fetch("SELECT current_setting('statement_timeout')") == [("0",)]
