from __future__ import annotations

from django.contrib import admin

from django_orm_views.admin import ReadOnlyViewAdmin
from test_project.warehouse.models import StockMovement
from test_project.warehouse.postgres_views import StockLevel


# ModelAdmin is generic in django-stubs only; subscripting it fails at runtime.
@admin.register(StockMovement)
class StockMovementAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["sku", "location", "quantity", "moved_at"]
    list_filter = ["location"]
    search_fields = ["sku"]


@admin.register(StockLevel)
class StockLevelAdmin(ReadOnlyViewAdmin):
    list_display = ["sku", "quantity", "locations"]
    search_fields = ["sku"]
