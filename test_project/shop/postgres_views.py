"""Views over the shop, as the analytics team and BI tools see it.

``manage.py sync_views`` creates each of these in the ``views`` schema as
``shop_<class name lowercased>``. The ``analytics`` role (ORM_VIEWS_GRANT_SELECT_TO)
can read every view here except the hidden one, and none of the tables.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Count, DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce

from django_orm_views import (
    PostgresMaterialisedViewMixin,
    PostgresViewFromQueryset,
    PostgresViewFromSQL,
    ReadableViewFromQueryset,
    ReadableViewFromSQL,
)
from test_project.shop.models import Customer, Order, OrderLine

REVENUE_STATUSES = [Order.Status.PAID.value, Order.Status.SHIPPED.value]
MONEY: DecimalField[Any, Any] = DecimalField(max_digits=14, decimal_places=2)


class CustomerSanitised(ReadableViewFromSQL):
    """Customers without personal data: first name, email domain and place only."""

    prefix = "shop"
    # The marketing team reads this view, and no other (on top of the analytics role,
    # which ORM_VIEWS_GRANT_SELECT_TO lets read every view that is not hidden).
    grant_select_to = ["marketing"]
    column_comments = {"country": "ISO 3166-1 alpha-2 code of the customer's country."}
    sql = """
        SELECT
            id,
            split_part(name, ' ', 1) AS first_name,
            split_part(email, '@', 2) AS email_domain,
            city,
            country
        FROM shop_customer
    """

    id = models.IntegerField(primary_key=True)
    first_name = models.CharField(max_length=200, help_text="The first word of the name only.")
    email_domain = models.CharField(
        max_length=254, db_comment="What follows the @ of the address; never the address."
    )
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2)

    def __str__(self) -> str:
        return f"{self.first_name} ({self.city}, {self.country})"


class PaidOrders(PostgresViewFromQueryset):
    """Orders that count as revenue; the statuses are bound as query parameters."""

    prefix = "shop"
    # It filters rows: a user-defined function in a reader's WHERE clause must not see
    # the rows this view leaves out before the filter applies.
    security_barrier = True

    @classmethod
    def get_queryset(cls) -> models.QuerySet[Any]:
        return Order.objects.filter(status__in=REVENUE_STATUSES).values(
            "id", "customer_id", "status", "created_at", "shipping_country"
        )


# A chain of plain views: OrderTotals <- CustomerRevenue <- CountryRevenue.


class OrderTotals(PostgresViewFromSQL):
    """One row an order, with its total and number of lines."""

    prefix = "shop"
    sql = """
        SELECT
            o.id AS order_id,
            o.customer_id,
            o.status,
            o.shipping_country,
            o.created_at,
            count(l.id) AS line_count,
            coalesce(sum(l.quantity * l.unit_price), 0) AS total
        FROM shop_order AS o
        LEFT JOIN shop_orderline AS l ON l.order_id = o.id
        GROUP BY o.id
    """


class CustomerRevenue(PostgresViewFromSQL):
    """Revenue a customer, from paid and shipped orders."""

    prefix = "shop"
    view_dependencies = [OrderTotals]
    sql = """
        SELECT
            c.id AS customer_id,
            c.country,
            count(t.order_id) AS order_count,
            sum(t.total) AS revenue
        FROM "views"."shop_ordertotals" AS t
        JOIN shop_customer AS c ON c.id = t.customer_id
        WHERE t.status IN ('paid', 'shipped')
        GROUP BY c.id, c.country
    """


class CountryRevenue(PostgresViewFromSQL):
    """Revenue a country. Its dependency on CustomerRevenue is found in the SQL."""

    prefix = "shop"
    # A literal % in a DB-API string is written %%.
    sql = """
        SELECT
            country,
            count(*) AS customers,
            sum(order_count) AS orders,
            sum(revenue) AS revenue,
            to_char(100 * sum(revenue) / sum(sum(revenue)) OVER (), 'FM990.0') || '%%'
                AS revenue_share
        FROM views.shop_customerrevenue
        GROUP BY country
    """


# Materialized views.


class DailySales(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    """Revenue a day (UTC); the statuses are passed as ``params``."""

    prefix = "shop"
    pk_field = "day"
    params = REVENUE_STATUSES
    sql = """
        SELECT
            (o.created_at AT TIME ZONE 'UTC')::date AS day,
            count(DISTINCT o.id) AS orders,
            sum(l.quantity) AS units,
            sum(l.quantity * l.unit_price) AS revenue
        FROM shop_order AS o
        JOIN shop_orderline AS l ON l.order_id = o.id
        WHERE o.status IN (%s, %s)
        GROUP BY 1
    """


class ProductSales(PostgresMaterialisedViewMixin, PostgresViewFromQueryset):
    """Units and revenue a product and shipping country, keyed on both columns."""

    prefix = "shop"
    pk_field = ("product_id", "country")
    indexes = [models.Index(fields=["country"], name="shop_productsales_country")]

    @classmethod
    def get_queryset(cls) -> models.QuerySet[Any]:
        return (
            OrderLine.objects.filter(order__status__in=REVENUE_STATUSES)
            .values("product_id", sku=F("product__sku"), country=F("order__shipping_country"))
            .annotate(
                orders=Count("order_id", distinct=True),
                units=Sum("quantity"),
                revenue=Sum(F("quantity") * F("unit_price"), output_field=MONEY),
            )
            .order_by()
        )


# A readable view with foreign keys to a model and to another readable view.


class OrderSummary(ReadableViewFromQueryset):
    """An order with its total.

    Readable through the ORM from the other side too: customer.order_summaries and
    sanitised_customer.orders.
    """

    prefix = "shop"

    id = models.BigIntegerField(primary_key=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, related_name="order_summaries"
    )
    sanitised_customer = models.ForeignKey(
        CustomerSanitised,
        on_delete=models.DO_NOTHING,
        null=True,
        related_name="orders",
        db_column="sanitised_customer_id",
    )
    total = models.DecimalField(max_digits=14, decimal_places=2)
    status = models.CharField(max_length=16, choices=Order.Status.choices)

    @classmethod
    def get_queryset(cls) -> models.QuerySet[Any]:
        return (
            Order.objects.annotate(
                sanitised_customer_id=F("customer_id"),
                total=Coalesce(
                    Sum(F("lines__quantity") * F("lines__unit_price"), output_field=MONEY),
                    Value(0, output_field=MONEY),
                ),
            )
            .values("id", "customer_id", "sanitised_customer_id", "total", "status")
            .order_by()
        )

    def __str__(self) -> str:
        return f"Order #{self.pk}: {self.total} ({self.status})"


class InternalCustomerContacts(PostgresViewFromSQL):
    """Contact details for support staff. Hidden: never granted to the analytics role."""

    prefix = "shop"
    hidden = True
    sql = """
        SELECT id, name, email, phone
        FROM shop_customer
    """
