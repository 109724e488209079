"""factory-boy factories for the shop models.

Values come from Faker and factory-boy's own random generator; call
``factory.random.reseed_random(seed)`` first for a repeatable data set.
"""

from __future__ import annotations

import datetime as dt

import factory
from django.utils.text import slugify
from factory import fuzzy

from test_project.shop.models import Customer, Order, OrderLine, Product

EMAIL_DOMAINS = ["example.com", "example.org", "mail.example.net", "post.example"]
COUNTRIES = ["GB", "FR", "DE", "ES", "IT", "NL", "US", "CA"]
CATEGORIES = ["books", "garden", "kitchen", "music", "outdoor", "toys"]
# Weighted so that most orders count as revenue (paid or shipped).
ORDER_STATUSES = [
    Order.Status.PAID,
    Order.Status.PAID,
    Order.Status.SHIPPED,
    Order.Status.SHIPPED,
    Order.Status.SHIPPED,
    Order.Status.PENDING,
    Order.Status.CANCELLED,
]


class CustomerFactory(factory.django.DjangoModelFactory[Customer]):
    class Meta:
        model = Customer
        django_get_or_create = ("email",)

    class Params:
        email_domain = fuzzy.FuzzyChoice(EMAIL_DOMAINS)

    name = factory.Faker("name")
    email = factory.LazyAttributeSequence(
        lambda customer, n: (
            f"{slugify(customer.name).replace('-', '.')}.{n}@{customer.email_domain}"
        )
    )
    phone = factory.Faker("phone_number")
    city = factory.Faker("city")
    country = fuzzy.FuzzyChoice(COUNTRIES)
    created_at = factory.Faker(
        "date_time_between", start_date="-2y", end_date="-90d", tzinfo=dt.timezone.utc
    )


class ProductFactory(factory.django.DjangoModelFactory[Product]):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Faker("catch_phrase")
    category = fuzzy.FuzzyChoice(CATEGORIES)
    price = fuzzy.FuzzyDecimal(2, 250, precision=2)
    active = factory.Faker("boolean", chance_of_getting_true=90)


class OrderFactory(factory.django.DjangoModelFactory[Order]):
    class Meta:
        model = Order

    customer = factory.SubFactory(CustomerFactory)
    status = fuzzy.FuzzyChoice(ORDER_STATUSES)
    created_at = factory.Faker(
        "date_time_between", start_date="-60d", end_date="now", tzinfo=dt.timezone.utc
    )
    shipping_country = factory.LazyAttribute(lambda order: order.customer.country)


class OrderLineFactory(factory.django.DjangoModelFactory[OrderLine]):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    product = factory.SubFactory(ProductFactory)
    quantity = fuzzy.FuzzyInteger(1, 5)
    unit_price = factory.LazyAttribute(lambda line: line.product.price)
