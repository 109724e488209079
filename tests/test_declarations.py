"""Declaring views: naming, validation, rendering and the errors that name the class."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import models
from django.utils.functional import classproperty

from django_orm_views import (
    PostgresMaterialisedViewMixin,
    PostgresMaterializedViewMixin,
    PostgresViewFromQueryset,
    PostgresViewFromSQL,
    plan_sync,
)
from django_orm_views.exceptions import UnknownViewError
from django_orm_views.registry import all_views, find_problems, find_view
from test_project.shop.factories import CustomerFactory
from test_project.shop.models import Customer, Order
from test_project.shop.postgres_views import DailySales

from .utils import fetch, run_command

MODULE = __name__


def test_names_follow_django_orm_views() -> None:
    class MyPostgreSQLView(PostgresViewFromSQL):
        sql = "SELECT 1"

    class Prefixed(PostgresViewFromSQL):
        prefix = "shop"
        sql = "SELECT 1"

    assert MyPostgreSQLView.view_name == "mypostgresqlview"
    assert MyPostgreSQLView.name == "mypostgresqlview"
    assert Prefixed.view_name == "shop_prefixed"
    assert Prefixed.name_with_schema == '"views"."shop_prefixed"'


def test_materialized_mixin_alias() -> None:
    assert PostgresMaterializedViewMixin is PostgresMaterialisedViewMixin


def test_abstract_bases_are_not_registered(declared_views: list[type]) -> None:
    class Base(PostgresViewFromSQL):
        abstract = True
        prefix = "reports"

    class Concrete(Base):
        sql = "SELECT 1 AS one"

    views = all_views()
    assert Concrete in views
    assert Base not in views
    assert Concrete.view_name == "reports_concrete"


def problems_of(view: type) -> list[tuple[str, str]]:
    return [(problem.id, str(problem).strip()) for problem in find_problems([view])]


def test_view_without_sql(declared_views: list[type]) -> None:
    class NoSql(PostgresViewFromSQL):
        pass

    assert problems_of(NoSql) == [
        (
            "orm_views.E001",
            f"View test_view_without_sql.<locals>.NoSql ({MODULE}) declares no `sql`. "
            "Set `sql` to the SELECT the view shows.",
        )
    ]


@pytest.mark.parametrize("value", ["", "  \n ", None, 42])
def test_view_with_blank_or_non_string_sql(declared_views: list[type], value: object) -> None:
    class BlankSql(PostgresViewFromSQL):
        sql = value

    assert problems_of(BlankSql) == [
        (
            "orm_views.E001",
            f"View test_view_with_blank_or_non_string_sql.<locals>.BlankSql ({MODULE}) has "
            f"`sql` = {value!r}, which is not a SELECT statement. Set `sql` to a non-empty "
            "string (or a classproperty returning one).",
        )
    ]


@pytest.mark.parametrize("value", ["1", b"1", 1, {1}])
def test_params_that_are_not_a_list(declared_views: list[type], value: object) -> None:
    class OddParams(PostgresViewFromSQL):
        sql = "SELECT %s AS a"
        # Wrong on purpose: the check is there for code no type checker has seen.
        params = value  # type: ignore[assignment]

    assert problems_of(OddParams) == [
        (
            "orm_views.E001",
            f"View test_params_that_are_not_a_list.<locals>.OddParams ({MODULE}) has "
            f"`params` = {value!r}. Set `params` to a list of values.",
        )
    ]


def test_queryset_view_without_get_queryset(declared_views: list[type]) -> None:
    class NoQueryset(PostgresViewFromQueryset):
        pass

    [(check_id, message)] = problems_of(NoQueryset)
    assert check_id == "orm_views.E001"
    assert message.endswith(
        "NoQueryset (tests.test_declarations) does not define `get_queryset`. "
        "Add a classmethod returning a queryset."
    )


def test_get_queryset_must_return_a_queryset(declared_views: list[type]) -> None:
    class ReturnsList(PostgresViewFromQueryset):
        @classmethod
        def get_queryset(cls) -> Any:
            return [1, 2]

    [(_, message)] = problems_of(ReturnsList)
    assert (
        "ReturnsList (tests.test_declarations) get_queryset() returned list, not a QuerySet."
        in message
    )


def test_name_longer_than_63_bytes(declared_views: list[type]) -> None:
    class ThisIsAVeryLongViewClassNameThatPostgresWouldTruncateSilently(PostgresViewFromSQL):
        prefix = "analytics_department"
        sql = "SELECT 1"

    [(check_id, message)] = problems_of(
        ThisIsAVeryLongViewClassNameThatPostgresWouldTruncateSilently
    )
    assert check_id == "orm_views.E002"
    assert "longer than PostgreSQL's 63 bytes. Shorten the class name or its `prefix`." in message


def test_view_dependencies_must_be_concrete_views_of_its_database(
    declared_views: list[type],
) -> None:
    class Base(PostgresViewFromSQL):
        abstract = True
        sql = "SELECT 1 AS id"

    class Stock(PostgresViewFromSQL):
        database = "warehouse"
        sql = "SELECT 1 AS id"

    class Reader(PostgresViewFromSQL):
        sql = "SELECT 1 AS id"
        # A model where a view class belongs, on purpose.
        view_dependencies = [Customer, Base, Stock]  # type: ignore[list-item]

    where = "test_view_dependencies_must_be_concrete_views_of_its_database.<locals>"
    assert problems_of(Reader) == [
        (
            "orm_views.E006",
            f"View {where}.Reader ({MODULE}) lists <class 'test_project.shop.models.Customer'> "
            "in `view_dependencies`, which is not a view class. List view classes only.",
        ),
        (
            "orm_views.E006",
            f"View {where}.Reader ({MODULE}) lists the abstract class {where}.Base ({MODULE}) "
            "in `view_dependencies`. List concrete view classes only.",
        ),
        (
            "orm_views.E006",
            f"View {where}.Reader ({MODULE}) (database 'default') depends on {where}.Stock "
            f"({MODULE}) (database 'warehouse'). A view can only depend on views of its own "
            "database.",
        ),
    ]


def test_two_classes_with_one_view_name(declared_views: list[type]) -> None:
    class Twin(PostgresViewFromSQL):
        sql = "SELECT 1"

    first = Twin

    class Twin(PostgresViewFromSQL):  # type: ignore[no-redef]
        sql = "SELECT 2"

    problems = find_problems([first, Twin])
    assert [problem.id for problem in problems] == ["orm_views.E003"]
    assert "both map to the view name 'twin' on database 'default'" in problems[0].message


def test_pk_field_on_a_plain_view(declared_views: list[type]) -> None:
    class NotMaterialized(PostgresViewFromSQL):
        pk_field = "id"
        sql = "SELECT 1 AS id"

    [(check_id, message)] = problems_of(NotMaterialized)
    assert check_id == "orm_views.E005"
    assert message.endswith(
        "sets `pk_field` but is not a materialized view. Add PostgresMaterialisedViewMixin "
        "first in its bases, or remove `pk_field`."
    )


def test_unknown_database_alias(declared_views: list[type]) -> None:
    class Elsewhere(PostgresViewFromSQL):
        database = "nowhere"
        sql = "SELECT 1"

    [(check_id, message)] = problems_of(Elsewhere)
    assert check_id == "orm_views.E004"
    assert "sets `database` = 'nowhere', which is not in settings.DATABASES." in message


def test_manage_py_check_reports_invalid_views(declared_views: list[type]) -> None:
    class Broken(PostgresViewFromSQL):
        pk_field = "id"
        sql = "SELECT 1 AS id"

    result = run_command("check")
    assert result.exit_code == 1
    assert "orm_views.E005" in result.stderr
    assert "Broken (tests.test_declarations)" in result.stderr


@pytest.mark.django_db
def test_sync_refuses_invalid_views_and_changes_nothing(declared_views: list[type]) -> None:
    run_command("sync_views")
    before = fetch(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'views'"
    )

    class Broken(PostgresViewFromSQL):
        pk_field = "id"
        sql = "SELECT 1 AS id"

    result = run_command("sync_views")
    assert result.exit_code == 1
    assert (
        "CommandError: View test_sync_refuses_invalid_views_and_changes_nothing.<locals>.Broken (tests.test_declarations) sets `pk_field`"
        in result.stderr
    )
    after = fetch(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'views'"
    )
    assert before == after


@pytest.mark.django_db
def test_sql_as_classproperty_with_params_and_literal_percent(declared_views: list[type]) -> None:
    class Percentages(PostgresViewFromSQL):
        params = ["50%", datetime.date(2024, 2, 29), None, [1, 2, 3]]

        @classproperty
        def sql(cls) -> str:
            return (
                "SELECT %s::text AS label, 7 %% 3 AS remainder, %s::date AS day, "
                "%s::int AS nothing, %s::int[] AS numbers"
            )

    plan = plan_sync()
    rendered = plan.rendered["percentages"].select_sql
    assert "'50%'" in rendered and "7 % 3" in rendered and "'2024-02-29'" in rendered
    run_command("sync_views")
    assert fetch('SELECT * FROM "views"."percentages"') == [
        ("50%", 1, datetime.date(2024, 2, 29), None, [1, 2, 3])
    ]


@pytest.mark.django_db
def test_queryset_parameters_are_bound_by_the_driver(declared_views: list[type]) -> None:
    nasty = "O'Brien; DROP TABLE shop_customer; --"

    class Filtered(PostgresViewFromQueryset):
        @classmethod
        def get_queryset(cls) -> models.QuerySet[Any]:
            return Customer.objects.filter(
                name__in=[nasty, "Zoë"],
                created_at__gte=datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc),
            ).values("id", "name")

    class Totals(PostgresViewFromQueryset):
        @classmethod
        def get_queryset(cls) -> models.QuerySet[Any]:
            return (
                Order.objects.filter(shipping_country="FR", customer__email__isnull=False)
                .values("id")
                .annotate(threshold=models.Value(Decimal("10.50")))
            )

    CustomerFactory.create(name=nasty)
    CustomerFactory.create(name="Zoë")
    CustomerFactory.create(name="Other")
    result = run_command("sync_views")
    assert result.exit_code == 0, result.stderr
    names = sorted(row[0] for row in fetch('SELECT name FROM "views"."filtered"'))
    assert names == [nasty, "Zoë"]
    assert fetch("SELECT to_regclass('public.shop_customer') IS NOT NULL") == [(True,)]


@pytest.mark.django_db
def test_get_queryset_as_an_instance_method_still_works(declared_views: list[type]) -> None:
    class OldStyle(PostgresViewFromQueryset):
        def get_queryset(self) -> models.QuerySet[Any]:  # type: ignore[override]
            return Customer.objects.values("id")

    assert run_command("sync_views").exit_code == 0
    assert fetch('SELECT count(*) FROM "views"."oldstyle"') == [(0,)]


@pytest.mark.django_db
def test_trailing_semicolons_are_accepted(declared_views: list[type]) -> None:
    class WithSemicolon(PostgresViewFromSQL):
        sql = "SELECT 1 AS one;  \n"

    assert run_command("sync_views").exit_code == 0
    assert fetch('SELECT one FROM "views"."withsemicolon"') == [(1,)]


@pytest.mark.django_db
def test_unparsable_sql_names_the_class(declared_views: list[type]) -> None:
    class Typo(PostgresViewFromSQL):
        sql = "SELEC 1"

    result = run_command("sync_views")
    assert result.exit_code == 1
    assert (
        'View test_unparsable_sql_names_the_class.<locals>.Typo (tests.test_declarations) has SQL that PostgreSQL cannot parse: syntax error at or near "SELEC"'
        in result.stderr
    )


@pytest.mark.django_db
def test_more_than_one_statement_is_refused(declared_views: list[type]) -> None:
    class TwoStatements(PostgresViewFromSQL):
        sql = "SELECT 1; DROP TABLE shop_customer"

    result = run_command("sync_views")
    assert result.exit_code == 1
    assert (
        "must have exactly one SELECT (or VALUES) statement as its SQL; found 2 statement(s)"
        in result.stderr
    )
    assert fetch("SELECT to_regclass('public.shop_customer') IS NOT NULL") == [(True,)]


@pytest.mark.django_db
def test_params_that_do_not_match_placeholders(declared_views: list[type]) -> None:
    class Mismatch(PostgresViewFromSQL):
        sql = "SELECT %s AS a, %s AS b"
        params = [1]

    result = run_command("sync_views")
    assert result.exit_code == 1
    assert "Mismatch (tests.test_declarations): its SQL and params do not match" in result.stderr
    assert "Write a literal % as %% and pass one value in `params` for each %s." in result.stderr


@pytest.mark.django_db
def test_sql_is_evaluated_once_per_sync(declared_views: list[type]) -> None:
    calls: list[int] = []

    class Counted(PostgresViewFromQueryset):
        @classmethod
        def get_queryset(cls) -> models.QuerySet[Any]:
            calls.append(1)
            return Customer.objects.values("id")

    assert run_command("sync_views").exit_code == 0
    assert len(calls) == 1


def test_the_public_names_are_listed_though_loaded_on_first_use() -> None:
    import django_orm_views

    listed = dir(django_orm_views)
    assert set(django_orm_views.__all__) <= set(listed)
    assert "__version__" in listed
    with pytest.raises(AttributeError, match="module 'django_orm_views' has no attribute 'nope'"):
        django_orm_views.nope  # noqa: B018


def test_a_view_is_found_by_name_whatever_the_case() -> None:
    assert find_view("SHOP_DailySales") is DailySales
    assert find_view("SHOP.dailysales") is DailySales
    with pytest.raises(UnknownViewError) as raised:
        find_view("shop_dailysale", database="default")
    assert str(raised.value) == (
        "No declared view is named 'shop_dailysale' on database 'default'. Did you mean: "
        "shop_dailysales, shop.DailySales, shop_productsales? Give a view name (e.g. shop_dailysales) or app_label.ClassName; "
        "`manage.py list_views` lists them."
    )
