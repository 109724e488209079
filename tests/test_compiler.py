"""The compiler and the dependency graph, without a database."""

from __future__ import annotations

import pytest

from django_orm_views.exceptions import DependencyCycleError, MissingDependencyError
from django_orm_views.indexes import IndexDefinition, index_name
from django_orm_views.registry import dependency_order

from .utils import referenced_views, rewrite_schema


class FakeView:
    """Stands in for a view class where only its name and module are read."""

    database = "default"

    def __init__(self, name: str) -> None:
        self.__qualname__ = name
        self.__module__ = "shop.postgres_views"


def classes(*names: str) -> dict[str, type]:
    return {name: FakeView(name.title()) for name in names}  # type: ignore[misc]


def test_references_in_the_views_schema_are_found_by_the_parser() -> None:
    sql = """
        WITH recent AS (SELECT * FROM "views"."orders" WHERE id > 3)
        SELECT * FROM recent JOIN views.customers c ON c.id = recent.customer_id
        WHERE EXISTS (SELECT 1 FROM views.flags) AND 'views.fake' <> 'x'
          AND id IN (SELECT id FROM public.other)
    """
    assert referenced_views(sql, "views") == {"orders", "customers", "flags"}


def test_references_follow_the_configured_schema() -> None:
    assert referenced_views("SELECT * FROM reporting.a JOIN views.b USING (id)", "reporting") == {
        "a"
    }


def test_rewrite_points_only_the_named_views_at_the_target_schema() -> None:
    sql = "SELECT a.id FROM views.a JOIN views.b ON a.id = b.id WHERE a.note = 'views.a'"
    rewritten = rewrite_schema(sql, "views", "views__staging", ["a"])
    assert referenced_views(rewritten, "views__staging") == {"a"}
    assert referenced_views(rewritten, "views") == {"b"}
    assert "'views.a'" in rewritten  # string literals are never touched


def test_rewrite_without_references_returns_the_text_unchanged() -> None:
    sql = "SELECT 1 AS one   -- keep me"
    assert rewrite_schema(sql, "views", "views__staging", ["a"]) is sql


def test_index_names_are_truncated_with_a_stable_hash() -> None:
    long_view = "v" * 60
    name = index_name(long_view, ["customer_id", "country"])
    assert len(name.encode()) <= 63
    assert name == index_name(long_view, ["customer_id", "country"])
    assert name != index_name(long_view, ["customer_id", "city"])
    assert index_name("shop_dailysales", ["day"]) == "shop_dailysales_day"


def test_index_definition_quotes_every_identifier() -> None:
    index = IndexDefinition(name='odd"name', columns=("-day", "Country"), unique=True)
    assert index.create_sql("views", "sales") == (
        'CREATE UNIQUE INDEX "odd""name" ON "views"."sales" ("day" DESC, "Country")'
    )


def test_dependency_order_is_deterministic_and_puts_dependencies_first() -> None:
    dependencies = {"c": {"b"}, "b": {"a"}, "a": set(), "z": set(), "y": {"a"}}
    order = dependency_order(dependencies, classes(*dependencies), "views")
    assert order == ["a", "z", "b", "y", "c"]


def test_a_cycle_names_every_class_in_it() -> None:
    dependencies = {"a": {"c"}, "b": {"a"}, "c": {"b"}, "d": set()}
    with pytest.raises(DependencyCycleError) as error:
        dependency_order(dependencies, classes(*dependencies), "views")
    message = str(error.value)
    assert message.startswith("Views depend on each other in a cycle: ")
    for name in ("A", "B", "C"):
        assert f"{name} (shop.postgres_views)" in message
    assert "D (shop.postgres_views)" not in message


def test_a_missing_dependency_is_not_reported_as_a_cycle() -> None:
    dependencies = {"a": {"ghost"}}
    with pytest.raises(MissingDependencyError) as error:
        dependency_order(dependencies, classes("a"), "views")
    assert str(error.value) == (
        "View A (shop.postgres_views) reads views.ghost, but no view class on database "
        "'default' is named 'ghost'. Declare that view, or fix the SQL."
    )


def test_a_missing_dependency_names_the_closest_declared_view() -> None:
    dependencies: dict[str, set[str]] = {"a": {"order_total"}, "order_totals": set()}
    with pytest.raises(MissingDependencyError) as error:
        dependency_order(dependencies, classes("a", "order_totals"), "views")
    assert "Did you mean 'order_totals' (Order_Totals (shop.postgres_views))?" in str(error.value)


def test_rewrite_handles_quoting_spacing_multibyte_text_and_catalogs() -> None:
    sql = (
        "SELECT é.x, 'views.a' AS note FROM views.\"a\" é "
        'JOIN "views" . b USING (x) JOIN mydb.views.c USING (x) -- views.a'
    )
    rewritten = rewrite_schema(sql, "views", "views__staging", ["a", "b", "c"])
    assert rewritten == (
        'SELECT é.x, \'views.a\' AS note FROM "views__staging"."a" é '
        'JOIN "views__staging" . b USING (x) JOIN mydb."views__staging".c USING (x) -- views.a'
    )
    assert referenced_views(rewritten, "views") == set()
