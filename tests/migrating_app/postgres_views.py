"""Views over the migrating app: some read the columns its migrations change, some do not.

Read what the migrations change (dropped before them, synced after them):
``ItemPrices`` (price, name/title), ``ExpensiveItems`` (through ItemPrices),
``ItemCodes`` (materialized; legacy_code), ``ItemTitles`` (a queryset over the model).
Read nothing the migrations change (readable throughout): ``CategoryNames`` and
``ItemCategories`` (item.category_id only).
"""

from __future__ import annotations

from typing import Any

from django.db import models

from django_orm_views import (
    PostgresMaterialisedViewMixin,
    PostgresViewFromQueryset,
    PostgresViewFromSQL,
)
from tests.migrating_app.models import INITIAL, Item


class ItemPrices(PostgresViewFromSQL):
    prefix = "migrating"
    if INITIAL:
        sql = "SELECT id, name, price FROM migrating_app_item"
    else:
        sql = "SELECT id, title AS name, price FROM migrating_app_item"


class ExpensiveItems(PostgresViewFromSQL):
    prefix = "migrating"
    sql = "SELECT id, name FROM views.migrating_itemprices WHERE price > 100"


class ItemCodes(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    prefix = "migrating"
    pk_field = "id"
    if INITIAL:
        sql = "SELECT id, legacy_code AS code FROM migrating_app_item"
    else:
        sql = "SELECT id, 'item-' || id AS code FROM migrating_app_item"


class ItemTitles(PostgresViewFromQueryset):
    prefix = "migrating"

    @classmethod
    def get_queryset(cls) -> models.QuerySet[Any]:
        return Item.objects.values("id", "name" if INITIAL else "title")


class CategoryNames(PostgresViewFromSQL):
    prefix = "migrating"
    sql = "SELECT id, label FROM migrating_app_category"


class ItemCategories(PostgresMaterialisedViewMixin, PostgresViewFromSQL):
    prefix = "migrating"
    pk_field = "id"
    sql = "SELECT id, category_id FROM migrating_app_item"
