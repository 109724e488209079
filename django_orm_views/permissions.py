"""A ``view_<model>`` permission for every readable view, so that staff can be let in.

Readable views are models marked auto-created (that keeps the migration autodetector
away from them), and Django creates neither content types nor permissions for
auto-created models. After every ``migrate`` (and ``flush``, which empties the
permission table) this module creates, for each readable view, its content type and
one permission: ``<app_label>.view_<model_name>``, "Can view <verbose name>". Read-only
views get no add, change or delete permission. ``ReadOnlyViewAdmin`` then lets in
superusers and the staff users who hold that permission, directly or through a group.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, models, router

from .registry import all_views

if TYPE_CHECKING:
    from django.apps import AppConfig

__all__ = ["create_view_permissions", "readable_view_models"]


def readable_view_models() -> list[type[Any]]:
    """Every concrete readable view (a view that is also a Django model)."""
    return [view for view in all_views() if issubclass(view, models.Model)]


def create_view_permissions(
    *,
    using: str = DEFAULT_DB_ALIAS,
    apps: Any = global_apps,
    verbosity: int = 1,
    stdout: TextIO | None = None,
) -> list[str]:
    """Create the missing content types and view permissions of the readable views in
    the database ``using``. Returns the permissions created, as ``app_label.codename``."""
    if not (
        global_apps.is_installed("django.contrib.auth")
        and global_apps.is_installed("django.contrib.contenttypes")
    ):
        return []
    try:
        # The models as the migrations left them: the tables may not exist yet.
        content_type_model = apps.get_model("contenttypes", "ContentType")
        permission_model = apps.get_model("auth", "Permission")
    except LookupError:
        return []
    if not router.allow_migrate_model(using, permission_model):
        return []
    views = readable_view_models()
    if not views:
        return []
    content_types = content_type_model.objects.db_manager(using)
    content_types.clear_cache()
    wanted: dict[tuple[int, str], str] = {}
    for view in views:
        meta = view._meta
        content_type = content_types.get_for_model(view, for_concrete_model=False)
        wanted[(content_type.pk, f"view_{meta.model_name}")] = f"Can view {meta.verbose_name_raw}"
    existing = set(
        permission_model.objects.using(using)
        .filter(content_type__in=[pk for pk, _ in wanted])
        .values_list("content_type", "codename")
    )
    missing = [
        permission_model(content_type_id=pk, codename=codename, name=name)
        for (pk, codename), name in wanted.items()
        if (pk, codename) not in existing
    ]
    permission_model.objects.using(using).bulk_create(missing)
    created = []
    labels = {
        ct.pk: ct.app_label
        for ct in content_types.filter(pk__in=[p.content_type_id for p in missing])
    }
    for permission in missing:
        label = f"{labels.get(permission.content_type_id, '?')}.{permission.codename}"
        created.append(label)
        if verbosity >= 2:
            (stdout or sys.stdout).write(f"Adding permission '{label}' for a readable view\n")
    return created


def handle_post_migrate(
    sender: AppConfig,
    *,
    using: str = DEFAULT_DB_ALIAS,
    apps: Any = global_apps,
    verbosity: int = 1,
    stdout: TextIO | None = None,
    **kwargs: Any,
) -> None:
    """Receiver of ``post_migrate``: once a run, on the last app's signal, when the
    content types and permissions of every other app exist."""
    configs = [
        config for config in global_apps.get_app_configs() if config.models_module is not None
    ]
    if not configs or sender is not configs[-1]:
        return
    create_view_permissions(using=using, apps=apps, verbosity=verbosity, stdout=stdout)
