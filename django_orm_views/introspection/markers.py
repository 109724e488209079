"""The package's markers: how it recognises what it created. A view carries an owner
marker on its ``_RETURN`` rule (its own comment belongs to the user); a working schema
(staging, the previous generation, storage) carries one as its comment."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# What the package writes to recognise its own objects. Both live where users and BI
# tools do not look: on a view's ``_RETURN`` rule (never on the view, whose comment
# belongs to the user) and on the working schemas a sync creates and later drops.
OWNER_MARKER_PREFIX = "django_orm_views "
SCHEMA_MARKER_PREFIX = "django_orm_views:"
STAGING_MARKER = f"{SCHEMA_MARKER_PREFIX}staging"
PREVIOUS_MARKER = f"{SCHEMA_MARKER_PREFIX}previous"
STORAGE_MARKER = f"{SCHEMA_MARKER_PREFIX}storage"
# How versions before 3.0 marked their views (in the view's own comment).
LEGACY_FINGERPRINT_PREFIX = "django-orm-views:"


def staging_schema_name(schema: str) -> str:
    return f"{schema}__staging"


def old_schema_prefix(schema: str) -> str:
    """Where the previous generation of the views schema lives after a swap."""
    return f"{schema}__old_"


def storage_schema_prefix(schema: str) -> str:
    """Where materialized views (and the views they read) are stored: a schema per sync
    that built some, which the generations' views point to and which no swap moves."""
    return f"{schema}__data_"


def owner_marker(
    fingerprint: str,
    extra_roles: Iterable[str] = (),
    storage: str | None = None,
    generation: str | None = None,
    size: int | None = None,
) -> str:
    """The comment of a view's ``_RETURN`` rule: the package's ownership marker, the
    view's fingerprint, the roles granted by ``--grant-select-permissions-to-user``,
    the generation (the sync that built it) and, for a view that only points to a
    stored one, the schema that stores it."""
    payload: dict[str, object] = {
        "fingerprint": fingerprint,
        "extra_roles": sorted(set(extra_roles)),
    }
    if storage is not None:
        payload["storage"] = storage
    if generation is not None:
        payload["generation"] = generation
    if size is not None:
        # How many views the generation was built with: one that lost some (to a
        # migration's CASCADE, say) is never rolled back to.
        payload["size"] = size
    return OWNER_MARKER_PREFIX + json.dumps(payload, sort_keys=True)


def previous_marker(
    replaced_at: float,
    views: Iterable[str],
    lost: int = 0,
    revoked: Mapping[str, Iterable[str]] | None = None,
) -> str:
    """The comment of a previous generation: when the swap replaced it, the views it
    held then, how many of the views it was built with it had lost by then (a rollback
    refuses a generation that has lost some), and the grants revoked from it at the swap
    (by view name; ``""``: USAGE on the schema), which a rollback gives back."""
    payload: dict[str, object] = {"replaced_at": round(replaced_at, 3), "views": sorted(views)}
    if lost:
        payload["lost"] = lost
    if revoked:
        payload["revoked"] = {name: sorted(roles) for name, roles in sorted(revoked.items())}
    return f"{PREVIOUS_MARKER} {json.dumps(payload, sort_keys=True)}"


@dataclass(frozen=True)
class OwnerMarker:
    fingerprint: str | None
    extra_roles: frozenset[str] = frozenset()
    storage: str | None = None
    generation: str | None = None
    size: int | None = None


def parse_owner_marker(rule_comment: str | None, legacy_comment: str | None) -> OwnerMarker | None:
    """The marker of a relation the package created, or None for anyone else's."""
    if rule_comment and rule_comment.startswith(OWNER_MARKER_PREFIX):
        try:
            payload = json.loads(rule_comment[len(OWNER_MARKER_PREFIX) :])
            storage, generation = payload.get("storage"), payload.get("generation")
            size = payload.get("size")
            return OwnerMarker(
                str(payload["fingerprint"]),
                frozenset(str(role) for role in payload.get("extra_roles", ())),
                None if storage is None else str(storage),
                None if generation is None else str(generation),
                None if size is None else int(size),
            )
        except (ValueError, KeyError, TypeError):
            return OwnerMarker(None)
    if legacy_comment and legacy_comment.startswith(LEGACY_FINGERPRINT_PREFIX):
        # Created by an older version: ours, rebuilt once to move its marker.
        return OwnerMarker(None)
    return None


@dataclass(frozen=True)
class WorkingSchema:
    """A schema the package created beside the views schema, recognised by its marker:
    ``staging`` (left by an interrupted sync), ``previous`` (the generation the last
    swap replaced, kept for readers and for a rollback), ``storage`` (stored objects)
    or ``other`` (a marker this version does not know: dropped like a leftover)."""

    name: str
    role: str
    replaced_at: float | None = None
    views: tuple[str, ...] = ()
    # Views it was built with that were gone when it was replaced.
    lost: int = 0
    # The grants revoked from it when it was replaced, by view ("": the schema's USAGE).
    revoked: tuple[tuple[str, tuple[str, ...]], ...] = ()


def parse_working_schema(name: str, comment: str) -> WorkingSchema:
    markers = {"staging": STAGING_MARKER, "previous": PREVIOUS_MARKER, "storage": STORAGE_MARKER}
    role = next(
        (
            role
            for role, marker in markers.items()
            if comment == marker or comment.startswith(marker + " ")
        ),
        None,
    )
    if role is None:
        return WorkingSchema(name, "other")
    if role != "previous":
        return WorkingSchema(name, role)
    try:
        payload = json.loads(comment[len(PREVIOUS_MARKER) :] or "{}")
        return WorkingSchema(
            name,
            role,
            float(payload["replaced_at"]),
            tuple(str(view) for view in payload.get("views", ())),
            int(payload.get("lost", 0)),
            tuple(
                (str(view), tuple(str(role) for role in roles))
                for view, roles in dict(payload.get("revoked", {})).items()
            ),
        )
    except (ValueError, KeyError, TypeError):
        # Marked by an older version, which dropped it right after the swap: what is
        # left of it was left by an interrupted sync (no time, no rollback).
        return WorkingSchema(name, "other")
