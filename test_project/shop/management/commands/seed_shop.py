"""Fill the shop with a small, repeatable data set built by the factories."""

from __future__ import annotations

import random
from typing import Any

import factory.random
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from test_project.shop.factories import (
    CustomerFactory,
    OrderFactory,
    OrderLineFactory,
    ProductFactory,
)
from test_project.shop.models import Customer, Order, OrderLine, Product

BATCH_SIZE = 2000
MAX_LINES_PER_ORDER = 4


class Command(BaseCommand):
    help = (
        "Delete every customer, product and order, then create new ones with the factories "
        "(in one transaction)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--customers", type=int, default=20, help="Default: 20.")
        parser.add_argument("--products", type=int, default=10, help="Default: 10.")
        parser.add_argument("--orders", type=int, default=60, help="Default: 60.")
        parser.add_argument(
            "--seed", type=int, default=1, help="Random seed, for a repeatable data set."
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            choices=tuple(connections),
            help='Database to seed. Default: "default".',
        )

    def handle(self, *args: Any, **options: Any) -> None:
        customers_wanted: int = options["customers"]
        products_wanted: int = options["products"]
        orders_wanted: int = options["orders"]
        database: str = options["database"]
        if orders_wanted and not (customers_wanted and products_wanted):
            raise CommandError("Orders need at least one customer and one product.")
        if min(customers_wanted, products_wanted, orders_wanted) < 0:
            raise CommandError("--customers, --products and --orders must not be negative.")

        # Factories only build instances here; rows are written with bulk_create so
        # that large data sets (benchmarks) stay quick to make.
        factory.random.reseed_random(options["seed"])
        pick = random.Random(options["seed"])

        with transaction.atomic(using=database):
            for model in (OrderLine, Order, Product, Customer):
                model._default_manager.using(database).all().delete()

            customers = Customer._default_manager.using(database).bulk_create(
                CustomerFactory.build_batch(customers_wanted), batch_size=BATCH_SIZE
            )
            products = Product._default_manager.using(database).bulk_create(
                ProductFactory.build_batch(products_wanted), batch_size=BATCH_SIZE
            )
            orders = Order._default_manager.using(database).bulk_create(
                [OrderFactory.build(customer=pick.choice(customers)) for _ in range(orders_wanted)],
                batch_size=BATCH_SIZE,
            )
            lines = [
                OrderLineFactory.build(order=order, product=product)
                for order in orders
                for product in pick.sample(
                    products, k=min(len(products), pick.randint(1, MAX_LINES_PER_ORDER))
                )
            ]
            OrderLine._default_manager.using(database).bulk_create(lines, batch_size=BATCH_SIZE)

        if options["verbosity"] >= 1:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Seeded {len(customers)} customers, {len(products)} products, "
                    f"{len(orders)} orders and {len(lines)} order lines."
                )
            )
