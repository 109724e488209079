"""Database routing of the demo project: the warehouse app lives in its own database."""

from __future__ import annotations

from typing import Any

WAREHOUSE_APP = "warehouse"
WAREHOUSE_DATABASE = "warehouse"


class WarehouseRouter:
    """Tables, reads and writes of the ``warehouse`` app go to the ``warehouse`` alias,
    and nothing else is migrated there. Views follow (see django_orm_views.routing)."""

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return WAREHOUSE_DATABASE if model._meta.app_label == WAREHOUSE_APP else None

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return WAREHOUSE_DATABASE if model._meta.app_label == WAREHOUSE_APP else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        in_warehouse = {obj._meta.app_label == WAREHOUSE_APP for obj in (obj1, obj2)}
        return None if len(in_warehouse) == 1 else False

    def allow_migrate(
        self,
        db: str,
        app_label: str,
        model_name: str | None = None,  # noqa: ARG002 (Django's signature; routed by app)
        **hints: Any,
    ) -> bool | None:
        if app_label == WAREHOUSE_APP:
            return db == WAREHOUSE_DATABASE
        if db == WAREHOUSE_DATABASE:
            return False
        return None
