"""``ReadOnlyViewAdmin``: the Django admin for readable views, which can only be read.

Register a readable view (``ReadableViewFromSQL`` / ``ReadableViewFromQueryset``) with it
as with any model::

    @admin.register(CustomerSanitised)
    class CustomerSanitisedAdmin(ReadOnlyViewAdmin):
        list_display = ["first_name", "city", "country"]
        list_filter = ["country"]
        search_fields = ["first_name", "city"]

The change list, search, filters, sorting and the read-only detail page work; add,
change and delete are refused (no buttons, no bulk actions, HTTP 403 on their URLs).

Who may look: superusers, and staff users with the view's ``view_<model>`` permission
(``<app_label>.view_customersanitised``). Django creates no permissions for readable
views (they are marked auto-created so that they never get migrations), so
django-orm-views creates that one view permission for each readable view after every
``migrate`` (see ``permissions.py``); grant it to users or groups as usual.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

__all__ = ["ReadOnlyViewAdmin"]


class ReadOnlyViewAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A ModelAdmin that lists, searches, filters and shows rows, and changes nothing."""

    # No bulk actions: the only built-in one deletes.
    actions = None

    # Django's signatures: the answer is no whoever asks, for any object.
    def has_add_permission(self, request: HttpRequest) -> bool:  # noqa: ARG002
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:  # noqa: ARG002
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:  # noqa: ARG002
        return False
