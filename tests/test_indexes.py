"""Indexes of materialized views: rendering (no database), then created by a real sync."""

from __future__ import annotations

import datetime
import decimal
from typing import TYPE_CHECKING, Any

import pytest
from django.contrib.postgres.indexes import BrinIndex, GinIndex
from django.db import models
from django.db.models import F, Q

from django_orm_views import (
    InvalidViewError,
    PostgresMaterialisedViewMixin,
    PostgresViewFromSQL,
    RefreshError,
    plan_sync,
    sync_views,
)
from django_orm_views.indexes import index_definitions, index_name, truncate_identifier
from django_orm_views.sync import ActionKind

from .utils import fetch, oid_of, stored_in

if TYPE_CHECKING:
    # What materialized() returns, for the type checker only: a class declared here
    # would be a view of every test.
    class MaterializedSQLView(PostgresMaterialisedViewMixin, PostgresViewFromSQL): ...


def materialized(name: str = "Sales", **attributes: Any) -> type[MaterializedSQLView]:
    """A materialized view class named ``name`` with ``attributes``, declared on the fly."""
    body = {"__module__": __name__, "sql": "SELECT 1 AS id", **attributes}
    return type(name, (PostgresMaterialisedViewMixin, PostgresViewFromSQL), body)


def rendered(view: type[PostgresViewFromSQL]) -> list[str]:
    return [index.create_sql("views", view.view_name) for index in index_definitions(view)]


# Rendering, without a database -------------------------------------------------------


def test_pk_field_gives_a_unique_index_named_after_the_view_and_columns(
    declared_views: list[type],
) -> None:
    assert rendered(materialized(pk_field="day", prefix="shop")) == [
        'CREATE UNIQUE INDEX "shop_sales_day" ON "views"."shop_sales" ("day")'
    ]
    assert rendered(materialized(pk_field=("product_id", "country"))) == [
        'CREATE UNIQUE INDEX "sales_product_id_country" ON "views"."sales" '
        '("product_id", "country")'
    ]


def test_multi_column_index_keeps_column_order_and_direction(declared_views: list[type]) -> None:
    view = materialized(indexes=[models.Index(fields=["country", "-day"], name="by_country")])
    assert rendered(view) == [
        'CREATE INDEX "by_country" ON "views"."sales" ("country", "day" DESC)'
    ]


def test_unnamed_index_is_named_like_the_unique_index(declared_views: list[type]) -> None:
    view = materialized(indexes=[models.Index(fields=["country", "-day"])])
    assert [index.name for index in index_definitions(view)] == ["sales_country_day"]


def test_partial_index_renders_its_condition_with_literals(declared_views: list[type]) -> None:
    condition = Q(
        active=True,
        deleted_at=None,
        country__in=["FR", "O'Neill"],
        score__gte=decimal.Decimal("2.5"),
        day__lt=datetime.date(2024, 1, 31),
        note__isnull=False,
        total__gt=-3,
    )
    view = materialized(indexes=[models.Index(fields=["id"], name="live", condition=condition)])
    assert rendered(view) == [
        'CREATE INDEX "live" ON "views"."sales" ("id") WHERE "active" = true AND '
        "\"country\" IN ('FR', 'O''Neill') AND \"day\" < '2024-01-31' AND \"deleted_at\" IS "
        'NULL AND "note" IS NOT NULL AND "score" >= 2.5 AND "total" > -3'
    ]


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (
            Q(a=1) | Q(b=2),
            "an index condition must be a Q of simple lookups joined by AND, such as "
            "Q(active=True).",
        ),
        (
            ~Q(a=1),
            "an index condition must be a Q of simple lookups joined by AND, such as "
            "Q(active=True).",
        ),
        (
            Q(a__icontains="x"),
            "lookup 'a__icontains' is not supported in index conditions; use one of exact, "
            "gt, gte, in, isnull, lt, lte.",
        ),
        (
            Q(a=F("b")),
            "the index condition a=F(b) does not compare with a literal value. Use None, a "
            "bool, a number, a string, a date or a time (a non-empty list of them for __in).",
        ),
        (
            Q(Q(a=1), b=2),
            "nested Q objects are not supported in index conditions.",
        ),
        (
            Q(a__in="FR"),
            "the index condition a__in='FR' does not compare with a literal value. Use None, a "
            "bool, a number, a string, a date or a time (a non-empty list of them for __in).",
        ),
        (
            Q(a__in=[]),
            "the index condition a__in=[] does not compare with a literal value. Use None, a "
            "bool, a number, a string, a date or a time (a non-empty list of them for __in).",
        ),
        (
            Q(a=float("nan")),
            "the index condition a=nan does not compare with a literal value. Use None, a "
            "bool, a number, a string, a date or a time (a non-empty list of them for __in).",
        ),
    ],
)
def test_unsupported_conditions_are_errors_naming_the_view(
    declared_views: list[type], condition: Q, message: str
) -> None:
    view = materialized(indexes=[models.Index(fields=["id"], name="partial", condition=condition)])
    with pytest.raises(InvalidViewError) as raised:
        index_definitions(view)
    assert str(raised.value) == f"View Sales ({__name__}): {message}"


def test_opclasses_are_quoted_and_may_be_schema_qualified(declared_views: list[type]) -> None:
    view = materialized(
        indexes=[
            models.Index(
                fields=["name", "sku"],
                name="by_name",
                opclasses=["text_pattern_ops", "public.gin_trgm_ops"],
            )
        ]
    )
    assert rendered(view) == [
        'CREATE INDEX "by_name" ON "views"."sales" '
        '("name" "text_pattern_ops", "sku" "public"."gin_trgm_ops")'
    ]


def test_postgres_indexes_name_their_method_and_storage_parameters(
    declared_views: list[type],
) -> None:
    view = materialized(
        indexes=[
            GinIndex(fields=["tags"], name="by_tag", fastupdate=False),
            BrinIndex(fields=["day"], name="by_day", pages_per_range=16),
        ]
    )
    assert rendered(view) == [
        'CREATE INDEX "by_tag" ON "views"."sales" USING "gin" ("tags") WITH (fastupdate = off)',
        'CREATE INDEX "by_day" ON "views"."sales" USING "brin" ("day") WITH (pages_per_range = 16)',
    ]


def test_a_subclass_of_index_is_still_a_btree(declared_views: list[type]) -> None:
    class NamedIndex(models.Index):
        pass

    view = materialized(indexes=[NamedIndex(fields=["day"], name="by_day")])
    assert rendered(view) == ['CREATE INDEX "by_day" ON "views"."sales" ("day")']


def test_covering_index_includes_its_columns(declared_views: list[type]) -> None:
    view = materialized(indexes=[models.Index(fields=["day"], name="cover", include=["total"])])
    assert rendered(view) == ['CREATE INDEX "cover" ON "views"."sales" ("day") INCLUDE ("total")']


def test_index_names_fit_in_63_bytes_even_with_multibyte_characters() -> None:
    name = index_name("ventes_par_région", ["catégorie_é" * 3, "pays"])
    assert len(name.encode()) <= 63
    assert name == index_name("ventes_par_région", ["catégorie_é" * 3, "pays"])
    assert name.startswith("ventes_par_région_catégorie_é")
    # ASCII names are shortened exactly as Django shortens them in migrations.
    from django.db.backends.utils import truncate_name

    long_name = "x" * 80
    assert truncate_identifier(long_name) == truncate_name(long_name, 63)
    assert truncate_identifier("é" * 40) != truncate_identifier("é" * 41)


def test_a_long_explicit_index_name_is_shortened_the_same_way(declared_views: list[type]) -> None:
    long_name = "index_" + "n" * 70
    view = materialized(indexes=[models.Index(fields=["day"], name=long_name)])
    (index,) = index_definitions(view)
    assert index.name == truncate_identifier(long_name)
    assert len(index.name) == 63


def test_two_indexes_with_one_name_are_an_error(declared_views: list[type]) -> None:
    view = materialized(pk_field="day", indexes=[models.Index(fields=["day"])])
    with pytest.raises(InvalidViewError) as raised:
        index_definitions(view)
    assert str(raised.value) == (
        f"View Sales ({__name__}) has two indexes named 'sales_day' (from `pk_field` and "
        "`indexes`). Give each index in `indexes` its own `name`."
    )


def test_expression_indexes_and_other_objects_are_refused(declared_views: list[type]) -> None:
    from django.db.models.functions import Lower

    with pytest.raises(InvalidViewError, match="expression indexes are not supported"):
        index_definitions(materialized(indexes=[models.Index(Lower("name"), name="lower")]))
    with pytest.raises(InvalidViewError, match="lists 'day' in `indexes`"):
        index_definitions(materialized(indexes=["day"]))


def test_only_a_view_with_a_unique_index_is_refreshed_concurrently(
    declared_views: list[type],
) -> None:
    keyed = materialized("Keyed", pk_field="id")
    assert keyed.get_refresh_sql() == 'REFRESH MATERIALIZED VIEW "views"."keyed"'
    assert keyed.get_refresh_sql(concurrently=True) == (
        'REFRESH MATERIALIZED VIEW CONCURRENTLY "views"."keyed"'
    )
    # Where a sync stored it.
    assert keyed.get_refresh_sql(schema="views__data_0a1b2c3d") == (
        'REFRESH MATERIALIZED VIEW "views__data_0a1b2c3d"."keyed"'
    )
    with pytest.raises(RefreshError) as raised:
        materialized("Unkeyed").get_refresh_sql(concurrently=True)
    assert str(raised.value) == (
        f"View Unkeyed ({__name__}) cannot be refreshed concurrently: it has no unique index. "
        "Set `pk_field` to its unique column(s), or refresh without concurrently."
    )


# Created by a sync -------------------------------------------------------------------

SALES_SQL = """
    SELECT
        g AS id,
        'item ' || g AS name,
        g %% 2 = 0 AS active,
        ARRAY[g %% 3] AS tags,
        DATE '2024-01-01' + g AS day,
        g * 1.5 AS total
    FROM generate_series(1, 20) AS g
"""


def index_definitions_in_database(view_name: str) -> dict[str, str]:
    """The indexes of the stored materialized view, written as if it lived in "views"."""
    where = stored_in(view_name)
    rows = fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
        [where, view_name],
    )
    return {name: definition.replace(f" ON {where}.", " ON views.") for name, definition in rows}


@pytest.mark.django_db
def test_sync_creates_every_kind_of_index(declared_views: list[type]) -> None:
    long_name = "a_partial_index_with_a_name_that_is_much_longer_than_postgres_allows"
    view = materialized(
        "IndexedSales",
        sql=SALES_SQL,
        pk_field=("id", "day"),
        indexes=[
            models.Index(fields=["day", "-total"], name="indexedsales_day_total"),
            models.Index(fields=["total"], name=long_name, condition=Q(active=True)),
            models.Index(fields=["name"], name="indexedsales_name", opclasses=["text_pattern_ops"]),
            GinIndex(fields=["tags"], name="indexedsales_tags"),
        ],
    )
    sync_views(database="default")

    indexes = index_definitions_in_database(view.view_name)
    short = truncate_identifier(long_name)
    assert indexes == {
        "indexedsales_id_day": "CREATE UNIQUE INDEX indexedsales_id_day ON "
        "views.indexedsales USING btree (id, day)",
        "indexedsales_day_total": "CREATE INDEX indexedsales_day_total ON views.indexedsales "
        "USING btree (day, total DESC)",
        short: f"CREATE INDEX {short} ON views.indexedsales USING btree (total) "
        "WHERE (active = true)",
        "indexedsales_name": "CREATE INDEX indexedsales_name ON views.indexedsales "
        "USING btree (name text_pattern_ops)",
        "indexedsales_tags": "CREATE INDEX indexedsales_tags ON views.indexedsales "
        "USING gin (tags)",
    }
    assert not plan_sync()


@pytest.mark.django_db
def test_with_data_false_creates_an_empty_unpopulated_view(declared_views: list[type]) -> None:
    view = materialized("LaterSales", sql=SALES_SQL, with_data=False)
    sync_views(database="default")
    assert fetch(
        "SELECT relispopulated FROM pg_class WHERE oid = %s", [oid_of(view.view_name)]
    ) == [(False,)]


@pytest.mark.django_db
def test_an_index_change_alone_replaces_the_view(declared_views: list[type]) -> None:
    view = materialized(
        "ReindexedSales",
        sql=SALES_SQL,
        indexes=[models.Index(fields=["day"], name="reindexedsales_by")],
    )
    sync_views(database="default")
    view.indexes = [models.Index(fields=["day", "total"], name="reindexedsales_by")]

    plan = plan_sync()
    changed = [(action.kind, action.name, action.reason) for action in plan.changes]
    assert changed == [(ActionKind.REPLACE, "reindexedsales", "definition changed")]

    sync_views(database="default")
    assert index_definitions_in_database("reindexedsales") == {
        "reindexedsales_by": "CREATE INDEX reindexedsales_by ON views.reindexedsales "
        "USING btree (day, total)"
    }


@pytest.mark.django_db
def test_a_partial_condition_change_alone_replaces_the_view(declared_views: list[type]) -> None:
    view = materialized(
        "PartialSales",
        sql=SALES_SQL,
        indexes=[models.Index(fields=["day"], name="partialsales_live", condition=Q(active=True))],
    )
    sync_views(database="default")
    view.indexes = [
        models.Index(fields=["day"], name="partialsales_live", condition=Q(active=False))
    ]
    assert [action.name for action in plan_sync().changes] == ["partialsales"]
