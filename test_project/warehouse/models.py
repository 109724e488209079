"""Stock movements, kept in their own database (the ``warehouse`` alias).

``test_project.routers.WarehouseRouter`` sends this app's tables, reads and writes to
that database; its views (``postgres_views.py``) live there too.
"""

from __future__ import annotations

from django.db import models


class StockMovement(models.Model):
    """Units of a product (by SKU) coming into (positive) or leaving (negative) a location."""

    sku = models.CharField(max_length=32)
    location = models.CharField(max_length=32)
    quantity = models.IntegerField()
    moved_at = models.DateTimeField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity:+d} x {self.sku} at {self.location}"
