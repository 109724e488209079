"""ReadOnlyViewAdmin through Django's test client, as a logged-in staff user."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_orm_views import sync_views
from django_orm_views.permissions import create_view_permissions
from test_project.shop.factories import CustomerFactory, OrderFactory, OrderLineFactory
from test_project.warehouse.models import StockMovement

from .utils import run_command

pytestmark = pytest.mark.django_db(databases=["default", "warehouse"])

CUSTOMERS = "/admin/shop/customersanitised/"
ORDERS = "/admin/shop/ordersummary/"
STOCK = "/admin/warehouse/stocklevel/"


@pytest.fixture
def shop() -> None:
    CustomerFactory.create(
        name="Ada Lovelace", email="ada@example.org", city="London", country="GB"
    )
    CustomerFactory.create(
        name="Blaise Pascal", email="blaise@example.com", city="Paris", country="FR"
    )
    CustomerFactory.create(name="Carl Gauss", email="carl@example.com", city="Berlin", country="DE")
    OrderLineFactory.create(
        order=OrderFactory.create(customer__email="ada@example.org", status="paid")
    )
    StockMovement.objects.create(
        sku="SKU-1", location="A", quantity=5, moved_at=dt.datetime.now(dt.timezone.utc)
    )
    sync_views()


def staff_client(*permissions: str) -> Client:
    user = User.objects.create_user("clerk", password="secret", is_staff=True)
    for label in permissions:
        app_label, codename = label.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def superuser_client() -> Client:
    user = User.objects.create_superuser("boss", "boss@example.com", "secret")
    client = Client()
    client.force_login(user)
    return client


def result_rows(html: str) -> int:
    return len(re.findall(r'<tr[^>]*>\s*<t[dh] class="field-', html))


class TestPermissions:
    def test_each_readable_view_gets_a_view_permission_and_no_other(self) -> None:
        readable = {
            (permission.content_type.app_label, permission.codename, permission.name)
            for permission in Permission.objects.filter(
                content_type__model__in=["customersanitised", "ordersummary", "stocklevel"]
            ).select_related("content_type")
        }
        assert readable == {
            ("shop", "view_customersanitised", "Can view customer sanitised"),
            ("shop", "view_ordersummary", "Can view order summary"),
            ("warehouse", "view_stocklevel", "Can view stock level"),
        }

    def test_creating_them_again_creates_nothing(self) -> None:
        assert create_view_permissions() == []
        Permission.objects.filter(codename="view_ordersummary").delete()
        assert create_view_permissions() == ["shop.view_ordersummary"]

    def test_remove_stale_contenttypes_keeps_them(self) -> None:
        result = run_command("remove_stale_contenttypes", "--noinput", verbosity=2)
        assert result.exit_code == 0, result.stderr
        assert "Deleting stale content type" not in result.stdout
        assert Permission.objects.filter(codename="view_customersanitised").exists()


class TestStaffAccess:
    def test_staff_with_the_view_permission_lists_searches_and_filters(self, shop: None) -> None:
        client = staff_client("shop.view_customersanitised")
        response = client.get(CUSTOMERS)
        assert response.status_code == 200
        assert result_rows(response.content.decode()) == 3
        assert "Select customer sanitised to view" in response.content.decode()

        searched = client.get(CUSTOMERS, {"q": "Paris"}).content.decode()
        assert result_rows(searched) == 1
        assert "Blaise" in searched

        filtered = client.get(CUSTOMERS, {"country": "DE"}).content.decode()
        assert result_rows(filtered) == 1
        assert "Carl" in filtered
        # The country filter offers the values of the view.
        assert 'href="?country=GB"' in response.content.decode()

    def test_the_admin_index_shows_only_what_the_user_may_view(self, shop: None) -> None:
        index = staff_client("shop.view_customersanitised").get("/admin/").content.decode()
        assert 'href="/admin/shop/customersanitised/"' in index
        assert 'href="/admin/shop/ordersummary/"' not in index
        assert 'href="/admin/shop/customersanitised/add/"' not in index

    def test_staff_without_the_permission_is_refused(self, shop: None) -> None:
        client = staff_client("shop.view_customersanitised")
        assert client.get(ORDERS).status_code == 403

    def test_nothing_can_be_added_changed_or_deleted(self, shop: None) -> None:
        client = superuser_client()
        customer = CustomerFactory.create(email="dora@example.com", name="Dora Explorer")
        sync_views()
        detail = f"{CUSTOMERS}{customer.pk}/change/"
        page = client.get(detail)
        assert page.status_code == 200
        html = page.content.decode()
        assert "Dora" in html
        assert 'name="_save"' not in html
        assert 'name="first_name"' not in html  # values, not inputs
        assert client.post(detail, {"first_name": "Eve"}).status_code == 403
        assert client.get(f"{CUSTOMERS}add/").status_code == 403
        assert client.post(f"{CUSTOMERS}{customer.pk}/delete/", {"post": "yes"}).status_code == 403
        listing = client.get(CUSTOMERS).content.decode()
        assert 'name="action"' not in listing  # no bulk actions
        assert "/admin/shop/customersanitised/add/" not in listing

    def test_relations_and_search_across_them(self, shop: None) -> None:
        client = staff_client("shop.view_ordersummary")
        html = client.get(ORDERS, {"q": "Ada"}).content.decode()
        assert result_rows(html) == 1
        assert "Ada Lovelace" in html
        assert result_rows(client.get(ORDERS, {"status__exact": "cancelled"}).content.decode()) == 0

    def test_a_view_on_the_second_database(self, shop: None) -> None:
        html = staff_client("warehouse.view_stocklevel").get(STOCK).content.decode()
        assert result_rows(html) == 1
        assert "SKU-1" in html
