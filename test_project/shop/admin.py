from __future__ import annotations

from django.contrib import admin

from django_orm_views.admin import ReadOnlyViewAdmin
from test_project.shop.models import Customer, Order, OrderLine, Product
from test_project.shop.postgres_views import CustomerSanitised, OrderSummary


# ModelAdmin is generic in django-stubs only; subscripting it fails at runtime.
@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "email", "city", "country", "created_at"]
    list_filter = ["country"]
    search_fields = ["name", "email", "city"]
    date_hierarchy = "created_at"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["sku", "name", "category", "price", "active"]
    list_filter = ["active", "category"]
    search_fields = ["sku", "name"]


class OrderLineInline(admin.TabularInline):  # type: ignore[type-arg]
    model = OrderLine
    extra = 0
    raw_id_fields = ["product"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "customer", "status", "shipping_country", "created_at"]
    list_filter = ["status", "shipping_country"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "customer__email"]
    raw_id_fields = ["customer"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]


# Readable views: listed, searched and filtered in the admin, never changed.


@admin.register(CustomerSanitised)
class CustomerSanitisedAdmin(ReadOnlyViewAdmin):
    list_display = ["id", "first_name", "email_domain", "city", "country"]
    list_filter = ["country"]
    search_fields = ["first_name", "city", "email_domain"]


@admin.register(OrderSummary)
class OrderSummaryAdmin(ReadOnlyViewAdmin):
    list_display = ["id", "customer", "total", "status"]
    list_filter = ["status"]
    list_select_related = ["customer"]
    search_fields = ["customer__name"]
