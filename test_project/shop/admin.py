from __future__ import annotations

from django.contrib import admin

from test_project.shop.models import Customer, Order, OrderLine, Product


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ["name", "email", "city", "country", "created_at"]
    list_filter = ["country"]
    search_fields = ["name", "email", "city"]
    date_hierarchy = "created_at"


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "category", "price", "active"]
    list_filter = ["active", "category"]
    search_fields = ["sku", "name"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ["product"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["id", "customer", "status", "shipping_country", "created_at"]
    list_filter = ["status", "shipping_country"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "customer__email"]
    raw_id_fields = ["customer"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]
