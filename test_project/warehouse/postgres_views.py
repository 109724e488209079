"""Views of the warehouse database.

``StockLevel`` sets no ``database``: the router places it with its app's tables, on the
``warehouse`` alias. ``DailyMovements`` names its database itself.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Count, Sum

from django_orm_views import (
    PostgresMaterialisedViewMixin,
    PostgresViewFromSQL,
    ReadableViewFromQueryset,
)
from test_project.warehouse.models import StockMovement


class StockLevel(ReadableViewFromQueryset):
    """Units in stock for each SKU, over every location."""

    prefix = "warehouse"

    sku = models.CharField(max_length=32, primary_key=True)
    quantity = models.IntegerField()
    locations = models.IntegerField()

    @classmethod
    def get_queryset(cls) -> models.QuerySet[Any]:
        return (
            StockMovement.objects.values("sku")
            .annotate(quantity=Sum("quantity"), locations=Count("location", distinct=True))
            .order_by()
        )

    def __str__(self) -> str:
        return f"{self.sku}: {self.quantity}"


class DailyMovements(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    """Units in and out a day; a materialized view on the warehouse database."""

    prefix = "warehouse"
    database = "warehouse"
    pk_field = "day"
    sql = """
        SELECT
            (moved_at AT TIME ZONE 'UTC')::date AS day,
            sum(quantity) FILTER (WHERE quantity > 0) AS units_in,
            -sum(quantity) FILTER (WHERE quantity < 0) AS units_out
        FROM warehouse_stockmovement
        GROUP BY 1
    """
