"""The same behaviour with psycopg 3 and psycopg2: parameter binding in rendered views.

Django uses psycopg 3 when it is installed, psycopg2 otherwise; the nox sessions
install one of them only and set ORM_VIEWS_EXPECTED_DRIVER to check which one runs, and
ORM_VIEWS_EXPECTED_POSTGRES to check the server's major version.
"""

from __future__ import annotations

import ast as python_ast
import datetime as dt
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, models
from django.db.models import Q, Value
from pglast import ast, parse_sql, visitors

import django_orm_views
from django_orm_views import PostgresViewFromQueryset, PostgresViewFromSQL, sync_views
from django_orm_views.compiler import render_view
from test_project.shop.factories import CustomerFactory, OrderFactory
from test_project.shop.models import Customer, Order

from .utils import fetch

pytestmark = pytest.mark.django_db

AWKWARD = "O'Brien 100% \\ %s {} ; -- done"


def parameter_references(sql: str) -> int:
    """How many $n / placeholders the parser finds in ``sql``."""

    class Counter(visitors.Visitor):
        found = 0

        def visit_ParamRef(self, ancestors: Any, node: ast.ParamRef) -> None:
            Counter.found += 1

    Counter()(parse_sql(sql))
    return Counter.found


def test_the_expected_driver_runs() -> None:
    # django-stubs does not declare the backends' DB-API module, `Database`.
    driver = connection.Database.__name__  # type: ignore[attr-defined]
    assert driver in ("psycopg", "psycopg2")
    expected = os.environ.get("ORM_VIEWS_EXPECTED_DRIVER")
    if expected:
        assert driver == expected


def test_the_expected_postgresql_runs() -> None:
    major = connection.pg_version // 10000  # type: ignore[attr-defined]
    assert major >= 15, f"PostgreSQL {major} is older than the oldest supported, 15"
    expected = os.environ.get("ORM_VIEWS_EXPECTED_POSTGRES")
    if expected:
        assert major == int(expected)


def test_the_package_imports_no_driver() -> None:
    """Django chooses the driver; the package only ever goes through Django."""
    package = Path(django_orm_views.__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        tree = python_ast.parse(path.read_text(), filename=str(path))
        imported = {
            alias.name.split(".")[0]
            for node in python_ast.walk(tree)
            if isinstance(node, python_ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in python_ast.walk(tree)
            if isinstance(node, python_ast.ImportFrom) and node.module
        }
        assert not imported & {"psycopg", "psycopg2"}, path


def test_queryset_parameters_of_every_kind(declared_views: list[type]) -> None:
    when = dt.datetime(2025, 3, 1, 12, 30, tzinfo=dt.timezone.utc)
    ada = CustomerFactory.create(name=AWKWARD, email="ada@example.org", country="GB")
    CustomerFactory.create(name="Other", email="other@example.org", country="FR")
    OrderFactory.create(customer=ada, status="paid", created_at=when)
    OrderFactory.create(customer=ada, status="cancelled", created_at=when - dt.timedelta(days=40))

    class AwkwardOrders(PostgresViewFromQueryset):
        @classmethod
        def get_queryset(cls) -> models.QuerySet[Any]:
            return (
                Order.objects.filter(
                    Q(customer__name=AWKWARD) | Q(customer__name__contains="%"),
                    status__in=["paid", "shipped"],
                    created_at__gte=when - dt.timedelta(days=1),
                    created_at__date__lte=dt.date(2025, 12, 31),
                    customer__phone__isnull=False,
                )
                .annotate(
                    label=Value(AWKWARD),
                    fee=Value(
                        Decimal("12.50"),
                        output_field=models.DecimalField(max_digits=6, decimal_places=2),
                    ),
                    flag=Value(True),
                )
                .values("id", "status", "label", "fee", "flag")
            )

    rendered = render_view(AwkwardOrders, connection, "views")
    # Every value is bound into the text: no placeholder is left for PostgreSQL.
    assert parameter_references(rendered.select_sql) == 0
    assert "O''Brien 100% " in rendered.select_sql
    sync_views(database="default")
    assert fetch("SELECT status, label, fee, flag FROM views.awkwardorders") == [
        ("paid", AWKWARD, Decimal("12.50"), True)
    ]


def test_sql_parameters_and_literal_percent(declared_views: list[type]) -> None:
    CustomerFactory.create(name="Zoë", email="zoe@example.org", country="NL")

    class WithParams(PostgresViewFromSQL):
        sql = """
            SELECT name, %s::text AS label, 100 || '%%' AS share,
                   %s::int AS three, %s::text IS NULL AS missing, %s::date AS day
            FROM shop_customer WHERE country = %s
        """
        # The order of params follows the placeholders.
        params = [AWKWARD, 3, None, dt.date(2025, 1, 2), "NL"]

    sync_views(database="default")
    assert fetch("SELECT * FROM views.withparams") == [
        ("Zoë", AWKWARD, "100%", 3, True, dt.date(2025, 1, 2))
    ]
    assert Customer.objects.filter(name="Zoë").exists()
