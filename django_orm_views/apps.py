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
        checks.register(view_checks.check_setting_values, "orm_views")
        checks.register(view_checks.check_databases, "orm_views")
        checks.register(view_checks.check_database_contents, "orm_views", checks.Tags.database)
        self.connect_migrate_signals()

    def connect_migrate_signals(self) -> None:
        from django.db.models.signals import post_migrate, pre_migrate

        from . import migrate, permissions

        # No sender: each receiver acts once a run, on the first (pre) or the last
        # (post) app's signal, whichever apps are installed.
        pre_migrate.connect(migrate.handle_pre_migrate, dispatch_uid="orm_views_pre_migrate")
        post_migrate.connect(
            permissions.handle_post_migrate, dispatch_uid="orm_views_view_permissions"
        )
        post_migrate.connect(migrate.handle_post_migrate, dispatch_uid="orm_views_post_migrate")
