from __future__ import annotations

from django.apps import AppConfig
from django.core.checks import Tags, register
from django.db.models.signals import post_migrate, pre_migrate


class OrmViewsConfig(AppConfig):
    name = "django_orm_views"
    label = "django_orm_views"
    verbose_name = "Database views"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the app registry is ready: these modules import the declared
        # views, and readable views are Django models.
        from . import checks, migrate, permissions, registry

        registry.autodiscover()
        register(checks.check_views, "orm_views")
        register(checks.check_settings, "orm_views")
        register(checks.check_setting_values, "orm_views")
        register(checks.check_databases, "orm_views")
        register(checks.check_database_contents, "orm_views", Tags.database)
        # No sender: each receiver acts once a run, on the first (pre) or the last
        # (post) app's signal, whichever apps are installed.
        pre_migrate.connect(migrate.handle_pre_migrate, dispatch_uid="orm_views_pre_migrate")
        post_migrate.connect(
            permissions.handle_post_migrate, dispatch_uid="orm_views_view_permissions"
        )
        post_migrate.connect(migrate.handle_post_migrate, dispatch_uid="orm_views_post_migrate")
