"""Declarations of views: base classes, mixins and naming. Nothing here touches a database.

A concrete subclass of :class:`PostgresViewFromSQL` or :class:`PostgresViewFromQueryset`
declared in an app's ``postgres_views`` module is one view in the views schema. The
registry finds them; the compiler renders them; the sync creates them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from django.db import models
from django.db.models.base import ModelBase
from django.utils.functional import classproperty

# Re-exported: the limit was first defined here.
from .conf import (
    POSTGRES_MAX_IDENTIFIER_BYTES as POSTGRES_MAX_IDENTIFIER_BYTES,
    declared_schema,
    schema_name,
)
from .exceptions import InvalidViewError, ReadOnlyViewError, RefreshError
from .routing import routed_database
from .sql import qualified_name, quote_identifier as quote_identifier

if TYPE_CHECKING:
    from django.db.models import QuerySet

__all__ = [
    "BasePostgresView",
    "HiddenViewMixin",
    "PostgresMaterialisedViewMixin",
    "PostgresMaterializedViewMixin",
    "PostgresViewFromQueryset",
    "PostgresViewFromSQL",
    "ReadableViewFromQueryset",
    "ReadableViewFromSQL",
]

# Every subclass of BasePostgresView, in the order the classes were created. The registry
# filters out the abstract ones; keeping them all here costs nothing and keeps views.py
# free of any lookup logic.
declared_classes: list[type[BasePostgresView]] = []


def describe(view: type[Any]) -> str:
    """``ClassName (module.path)``: how every message refers to a view class."""
    return f"{view.__qualname__} ({view.__module__})"


class PostgresMaterialisedViewMixin:
    """Makes a view materialized. Put it first in the bases.

    ``pk_field`` (a column, or a tuple of columns) gets a unique index, which also lets
    the view be refreshed concurrently. ``indexes`` takes ``django.db.models.Index``
    objects; ``with_data = False`` creates the view empty (``WITH NO DATA``).
    """

    pk_field: ClassVar[str | Sequence[str] | None] = None
    indexes: ClassVar[Sequence[models.Index]] = ()
    with_data: ClassVar[bool] = True

    @classmethod
    def get_refresh_sql(cls, concurrently: bool = False, schema: str | None = None) -> str:
        """The ``REFRESH MATERIALIZED VIEW`` statement for this view, stored in ``schema``
        (default: the views schema). A sync stores materialized views in a schema of
        their own, which ``list_views --format json`` names (``stored_in``); the refresh
        functions and ``refresh_views`` find it themselves."""
        return refresh_sql(cls, concurrently=concurrently, schema=schema)  # type: ignore[arg-type]


PostgresMaterializedViewMixin = PostgresMaterialisedViewMixin


class HiddenViewMixin:
    """A view that is created but never granted to anyone."""

    hidden: ClassVar[bool] = True


class BasePostgresView:
    """Behaviour shared by every declared view; use one of the two subclasses below."""

    abstract: ClassVar[bool] = True
    prefix: ClassVar[str | None] = None
    view_dependencies: ClassVar[Sequence[type[BasePostgresView]]] = ()
    hidden: ClassVar[bool] = False
    # For analysts and BI tools. The view's comment is its docstring, unless the class
    # sets ``comment = "..."`` (``""``: none); ``column_comments`` win over a readable
    # view's ``db_comment`` / ``help_text``.
    column_comments: ClassVar[Mapping[str, str]] = {}
    # Plain views only: the options of PostgreSQL's CREATE VIEW ... WITH (...).
    security_barrier: ClassVar[bool] = False
    security_invoker: ClassVar[bool] = False
    # SELECT on this view (and USAGE on the schema) for these roles too, on top of
    # ORM_VIEWS_GRANT_SELECT_TO. Never with ``hidden = True``.
    grant_select_to: ClassVar[Sequence[str]] = ()
    # The class's own docstring, kept before Django gives models one of its own.
    _declared_docstring: ClassVar[str | None] = None

    @classproperty
    def database(cls: type[BasePostgresView]) -> str:
        """The alias the view lives in: a class sets ``database = "<alias>"``; without it
        the database routers decide (``allow_migrate``, see ``routing.py``), which is
        ``"default"`` when no router has an opinion."""
        return routed_database(cls)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._declared_docstring = cls.__dict__.get("__doc__")
        declared_classes.append(cls)

    @classproperty
    def view_name(cls: type[BasePostgresView]) -> str:
        """``<prefix>_<classname lowercased>``, or the lowercased class name."""
        name = cls.__name__.lower()
        if cls.prefix is not None:
            return f"{cls.prefix}_{name}"
        return name

    @classproperty
    def qualified_name(cls) -> str:
        """The quoted, schema-qualified name: ``"views"."<view_name>"``."""
        return qualified_name(schema_name(), cls.view_name)

    # django-orm-views 2 spelled these ``name`` and ``name_with_schema``. A readable
    # view may declare a model field called ``name``, which then wins; the package
    # itself only uses ``view_name``.
    @classproperty
    def name(cls) -> str:
        return str(cls.view_name)

    @classproperty
    def name_with_schema(cls) -> str:
        return str(cls.qualified_name)

    @classmethod
    def is_materialized(cls) -> bool:
        return issubclass(cls, PostgresMaterialisedViewMixin)

    @classmethod
    def is_abstract(cls) -> bool:
        """Abstract classes (``abstract = True`` in their body, or an abstract Django
        model) are bases for other views and are never created."""
        if cls.__dict__.get("abstract", False):
            return True
        meta = getattr(cls, "_meta", None)
        return bool(meta is not None and meta.abstract)

    @classmethod
    def get_sql_and_params(cls) -> tuple[str, Sequence[Any]]:
        """The view's SELECT and its parameters, in DB-API style (``%s``, ``%%``)."""
        raise NotImplementedError


class PostgresViewFromSQL(BasePostgresView):
    """A view from raw SQL: ``sql`` (a string or a ``classproperty``), optional ``params``.

    The SQL is a DB-API string: a literal ``%`` is written ``%%``; ``params`` binds
    values into ``%s`` placeholders.
    """

    abstract = True
    params: ClassVar[Sequence[Any]] = ()

    @classmethod
    def get_sql_and_params(cls) -> tuple[str, Sequence[Any]]:
        try:
            sql = cls.sql  # type: ignore[attr-defined]
        except AttributeError:
            _invalid(cls, "declares no `sql`. Set `sql` to the SELECT the view shows.")
        if not isinstance(sql, str) or not sql.strip():
            _invalid(
                cls,
                f"has `sql` = {sql!r}, which is not a SELECT statement. "
                "Set `sql` to a non-empty string (or a classproperty returning one).",
            )
        params = cls.params
        if isinstance(params, (str, bytes)) or not isinstance(params, Sequence):
            _invalid(cls, f"has `params` = {params!r}. Set `params` to a list of values.")
        return sql, list(params)


class PostgresViewFromQueryset(BasePostgresView):
    """A view from a Django queryset returned by the classmethod ``get_queryset``."""

    abstract = True

    @classmethod
    def get_queryset(cls) -> QuerySet[Any]:
        _invalid(cls, "does not define `get_queryset`. Add a classmethod returning a queryset.")

    @classmethod
    def get_sql_and_params(cls) -> tuple[str, Sequence[Any]]:
        queryset = _call_get_queryset(cls)
        if not isinstance(queryset, models.QuerySet):
            _invalid(
                cls,
                f"get_queryset() returned {type(queryset).__name__}, not a QuerySet. "
                "Return a queryset such as `Model.objects.values(...)`.",
            )
        # Compiled for the view's own database, whatever routers say about reads.
        sql, params = queryset.query.get_compiler(using=cls.database).as_sql()
        return sql, list(params)


def _call_get_queryset(cls: type[PostgresViewFromQueryset]) -> object:
    # django-orm-views documented `get_queryset(self)` as well as the classmethod; accept
    # both so that existing declarations keep working.
    attribute = inspect.getattr_static(cls, "get_queryset")
    if isinstance(attribute, (classmethod, staticmethod)):
        return cls.get_queryset()
    return cls().get_queryset()


def _invalid(cls: type[Any], problem: str) -> NoReturn:
    raise InvalidViewError(f"View {describe(cls)} {problem}")


# Readable views --------------------------------------------------------------------------


class ReadOnlyQuerySet(models.QuerySet[Any]):
    """A queryset over a view: reading works, every write raises ReadOnlyViewError."""

    def _refuse(self, operation: str) -> NoReturn:
        raise ReadOnlyViewError(
            f"{describe(self.model)} is a read-only database view: {operation}() is not "
            "allowed. Write to the tables the view reads from instead."
        )

    def create(self, **kwargs: Any) -> NoReturn:
        self._refuse("create")

    def get_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("get_or_create")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("update_or_create")

    def bulk_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("bulk_create")

    def bulk_update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("bulk_update")

    def update(self, **kwargs: Any) -> NoReturn:
        self._refuse("update")

    def delete(self) -> NoReturn:
        self._refuse("delete")

    async def acreate(self, **kwargs: Any) -> NoReturn:
        self._refuse("acreate")

    async def aupdate(self, **kwargs: Any) -> NoReturn:
        self._refuse("aupdate")

    async def adelete(self) -> NoReturn:
        self._refuse("adelete")


class ReadOnlyViewManager(models.Manager.from_queryset(ReadOnlyQuerySet)):  # type: ignore[misc]
    """Reads from the database the view lives in unless ``using()`` says otherwise."""

    def get_queryset(self) -> ReadOnlyQuerySet:
        queryset: ReadOnlyQuerySet = super().get_queryset()
        if self._db is None:
            queryset = queryset.using(getattr(self.model, "database", "default"))
        return queryset


class ReadableViewBase(ModelBase):
    """Metaclass of readable views: an unmanaged model over ``"<schema>"."<view_name>"``.

    The model is marked ``auto_created`` so that Django's migration autodetector, which
    only looks at ``apps.get_models()``, never writes a migration for it; relations to
    and from it still resolve, since Django builds those from every registered model.
    """

    def __new__(
        mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any
    ) -> ReadableViewBase:
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        meta = cls._meta  # type: ignore[attr-defined]
        if not meta.abstract:
            meta.managed = False
            meta.auto_created = True
            view_name = cls.view_name  # type: ignore[attr-defined]
            # Not validated here: a bad ORM_VIEWS_SCHEMA must not fail the import of the
            # user's postgres_views module; the checks and every sync report it.
            meta.db_table = qualified_name(declared_schema(), view_name)
        return cls


class ReadableViewMixin(models.Model, metaclass=ReadableViewBase):
    objects = ReadOnlyViewManager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("save")

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse("delete")

    def _refuse(self, operation: str) -> NoReturn:
        raise ReadOnlyViewError(
            f"{describe(type(self))} is a read-only database view: {operation}() is not "
            "allowed. Write to the tables the view reads from instead."
        )


class ReadableViewFromSQL(PostgresViewFromSQL, ReadableViewMixin):
    """A raw SQL view that is also an unmanaged, read-only Django model."""

    abstract = True

    class Meta:
        abstract = True


class ReadableViewFromQueryset(PostgresViewFromQueryset, ReadableViewMixin):
    """A queryset view that is also an unmanaged, read-only Django model."""

    abstract = True

    class Meta:
        abstract = True


def require_materialized(view: type[BasePostgresView]) -> None:
    if not issubclass(view, PostgresMaterialisedViewMixin):
        raise RefreshError(
            f"View {describe(view)} is not a materialized view, so it cannot be refreshed. "
            "Add PostgresMaterialisedViewMixin first in its bases, or do not refresh it."
        )


def has_unique_index(view: type[BasePostgresView]) -> bool:
    return bool(getattr(view, "pk_field", None))


def refresh_sql(
    view: type[BasePostgresView], *, concurrently: bool = False, schema: str | None = None
) -> str:
    """``REFRESH MATERIALIZED VIEW [CONCURRENTLY] "<schema>"."<name>"``: ``schema`` is
    where the view is stored (default: the views schema)."""
    require_materialized(view)
    if concurrently and not has_unique_index(view):
        raise RefreshError(
            f"View {describe(view)} cannot be refreshed concurrently: it has no unique index. "
            "Set `pk_field` to its unique column(s), or refresh without concurrently."
        )
    target = qualified_name(schema or schema_name(), view.view_name)
    keyword = " CONCURRENTLY" if concurrently else ""
    return f"REFRESH MATERIALIZED VIEW{keyword} {target}"


VIEW_OPTIONS = ("security_barrier", "security_invoker")


def view_comment(view: type[BasePostgresView]) -> str | None:
    """The view's comment: ``comment`` if the class (or a base) sets it as a string
    (``""``: none), else the class's own docstring, cleaned (``inspect.cleandoc``)."""
    for klass in view.__mro__:
        value = klass.__dict__.get("comment")
        if isinstance(value, str):
            return value or None
    docstring = view._declared_docstring
    return inspect.cleandoc(docstring) or None if docstring else None


def column_comments(view: type[BasePostgresView]) -> dict[str, str]:
    """Comments of the view's columns, by column: a readable view's fields' ``db_comment``
    (else ``help_text``), then ``column_comments``, which wins."""
    comments: dict[str, str] = {}
    meta = getattr(view, "_meta", None)
    for field in meta.concrete_fields if meta is not None else ():
        text = getattr(field, "db_comment", None) or field.help_text
        if text and field.column:
            comments[field.column] = str(text)
    comments.update({str(column): str(text) for column, text in view.column_comments.items()})
    return {column: text for column, text in comments.items() if text}


def view_options(view: type[BasePostgresView]) -> tuple[str, ...]:
    """The options set (``security_barrier=true``, ...), in a fixed order."""
    return tuple(f"{name}=true" for name in VIEW_OPTIONS if getattr(view, name, False) is True)
