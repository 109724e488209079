"""The migrating app's models, as the code is at migration 0001 (``initial``) or after
the last migration (``final``): see tests/migrating_settings.py."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

INITIAL = getattr(settings, "MIGRATING_APP_STAGE", "final") == "initial"


class Category(models.Model):
    label = models.CharField(max_length=50)

    def __str__(self) -> str:
        return self.label


class Item(models.Model):
    # The django-stubs plugin reads test_project's settings, where this app is not
    # installed, so it adds no manager; and each stage declares `price` differently.
    objects: ClassVar[models.Manager[Item]]
    price: models.Field[Any, Any]

    category = models.ForeignKey(Category, on_delete=models.PROTECT)
    if INITIAL:
        name = models.CharField(max_length=100)
        price = models.IntegerField()
        legacy_code = models.CharField(max_length=20, default="")
    else:
        # 0002 makes price a decimal; 0003 renames name to title and drops legacy_code.
        title = models.CharField(max_length=100)
        price = models.DecimalField(max_digits=10, decimal_places=2)

    def __str__(self) -> str:
        return f"item {self.pk}"
