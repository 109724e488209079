"""Readable views: unmanaged, read-only models over the views, with relations both ways."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from django.db import models

from django_orm_views import ReadableViewFromSQL
from django_orm_views.exceptions import ReadOnlyViewError
from django_orm_views.views import declared_classes
from test_project.shop.factories import CustomerFactory, OrderFactory, OrderLineFactory
from test_project.shop.models import Customer
from test_project.shop.postgres_views import CustomerSanitised, OrderSummary

from .utils import run_command

pytestmark = pytest.mark.django_db


class OrderLinks(ReadableViewFromSQL):
    """Links that are NULL for cancelled orders: nullable FKs to a model and to a view."""

    prefix = "test"
    sql = """
        SELECT id,
               CASE WHEN status = 'cancelled' THEN NULL ELSE customer_id END AS customer_id,
               CASE WHEN status = 'cancelled' THEN NULL ELSE customer_id END AS sanitised_id
        FROM shop_order
    """
    id = models.BigIntegerField(primary_key=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.DO_NOTHING, null=True, related_name="order_links"
    )
    sanitised = models.ForeignKey(
        CustomerSanitised, on_delete=models.DO_NOTHING, null=True, related_name="order_links"
    )

    class Meta:
        app_label = "shop"


# Declared for the tests that ask for it only, so other tests see test_project's views.
declared_classes.remove(OrderLinks)


@pytest.fixture
def with_order_links(declared_views: list[type]) -> None:
    declared_views.append(OrderLinks)


@pytest.fixture
def synced() -> None:
    assert run_command("sync_views").exit_code == 0


def test_readable_view_maps_to_the_view() -> None:
    assert CustomerSanitised._meta.db_table == '"views"."shop_customersanitised"'
    assert CustomerSanitised._meta.managed is False


def test_get_and_lookup_errors(synced: None) -> None:
    alice = CustomerFactory.create(email="alice@example.org", city="Lyon")
    CustomerFactory.create(city="Lyon")
    row = CustomerSanitised.objects.get(id=alice.id)
    assert row.email_domain == "example.org"
    assert not hasattr(row, "email")
    with pytest.raises(CustomerSanitised.DoesNotExist):
        CustomerSanitised.objects.get(id=alice.id + 1000)
    with pytest.raises(CustomerSanitised.MultipleObjectsReturned):
        CustomerSanitised.objects.get(city="Lyon")


def test_foreign_keys_to_models_and_views_work_both_ways(synced: None) -> None:
    order = OrderFactory.create(status="paid")
    OrderLineFactory.create(order=order, quantity=2, unit_price=5)
    summary = OrderSummary.objects.select_related("customer", "sanitised_customer").get(id=order.id)
    assert summary.customer == order.customer
    assert summary.sanitised_customer is not None
    assert summary.sanitised_customer.id == order.customer_id
    assert list(order.customer.order_summaries.values_list("id", flat=True)) == [order.id]
    sanitised = CustomerSanitised.objects.get(id=order.customer_id)
    assert list(sanitised.orders.values_list("id", flat=True)) == [order.id]
    assert Customer.objects.filter(order_summaries__status="paid").get() == order.customer


def test_nullable_foreign_keys_read_as_none(with_order_links: None, synced: None) -> None:
    kept = OrderFactory.create(status="paid")
    cancelled = OrderFactory.create(status="cancelled")
    links = {row.id: row for row in OrderLinks.objects.select_related("customer", "sanitised")}
    assert links[kept.id].customer == kept.customer
    assert links[kept.id].sanitised.id == kept.customer_id
    assert links[cancelled.id].customer is None
    assert links[cancelled.id].sanitised is None
    # The django-stubs plugin knows the models of installed apps' models modules only:
    # not OrderLinks, declared in this test module, nor the accessors it adds to Customer.
    order_links = kept.customer.order_links  # type: ignore[attr-defined]
    assert list(order_links.values_list("id", flat=True)) == [kept.id]
    assert not cancelled.customer.order_links.exists()  # type: ignore[attr-defined]
    assert list(OrderLinks.objects.filter(customer__isnull=True).values_list("id", flat=True)) == [
        cancelled.id
    ]


@pytest.mark.parametrize(
    "write",
    [
        lambda: OrderSummary.objects.create(id=1, status="paid"),
        lambda: OrderSummary.objects.update(status="paid"),
        lambda: OrderSummary.objects.all().delete(),
        lambda: OrderSummary.objects.bulk_create([]),
        lambda: OrderSummary.objects.get_or_create(id=1),
        lambda: OrderSummary.objects.update_or_create(id=1),
        lambda: OrderSummary.objects.bulk_update([], ["status"]),
        lambda: asyncio.run(OrderSummary.objects.acreate(id=1, status="paid")),
        lambda: asyncio.run(OrderSummary.objects.aupdate(status="paid")),
        lambda: asyncio.run(OrderSummary.objects.all().adelete()),
    ],
    ids=[
        "create",
        "update",
        "delete",
        "bulk_create",
        "get_or_create",
        "update_or_create",
        "bulk_update",
        "acreate",
        "aupdate",
        "adelete",
    ],
)
def test_writes_through_the_manager_raise(
    write: Callable[[], object], request: pytest.FixtureRequest, synced: None
) -> None:
    with pytest.raises(ReadOnlyViewError) as error:
        write()
    operation = request.node.callspec.id
    assert str(error.value) == (
        "OrderSummary (test_project.shop.postgres_views) is a read-only database view: "
        f"{operation}() is not allowed. Write to the tables the view reads from instead."
    )


def test_instance_save_and_delete_raise(synced: None) -> None:
    OrderFactory.create()
    summary = OrderSummary.objects.first()
    assert summary is not None
    with pytest.raises(ReadOnlyViewError, match=r"save\(\) is not allowed"):
        summary.save()
    with pytest.raises(ReadOnlyViewError, match=r"delete\(\) is not allowed"):
        summary.delete()


def test_makemigrations_ignores_readable_views() -> None:
    result = run_command("makemigrations", "--check", "--dry-run")
    assert result.exit_code == 0, result.stdout
    assert "No changes detected" in result.stdout
