from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class OrmViewsConfig(AppConfig):
    name = "django_orm_views"
    label = "django_orm_views"
    verbose_name = "Database views"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks as view_checks
        from .registry import autodiscover

        autodiscover()
        checks.register(view_checks.check_views, "orm_views")
        checks.register(view_checks.check_settings, "orm_views")
