"""Quoting: identifiers, qualified names, literals and roles. The only place that quotes;
every statement the package writes goes through it."""

from __future__ import annotations

from .conf import PUBLIC_KEYWORD_ROLE

__all__ = [
    "object_keyword",
    "qualified_name",
    "quote_identifier",
    "quote_literal",
    "quote_qualified_name",
    "quote_role",
]


def quote_identifier(name: str) -> str:
    """Quote an identifier the way PostgreSQL's ``quote_ident`` always would."""
    return '"' + name.replace('"', '""') + '"'


def qualified_name(schema: str, name: str) -> str:
    """``"schema"."name"``, both quoted."""
    return f"{quote_identifier(schema)}.{quote_identifier(name)}"


def object_keyword(object_kind: str) -> str:
    """The keyword of DROP / ALTER / COMMENT for a relation kind of the catalog."""
    return "MATERIALIZED VIEW" if object_kind == "materialized view" else "VIEW"


def quote_qualified_name(name: str) -> str:
    """Quote each dot-separated part of a possibly schema-qualified name (an operator
    class such as ``public.gin_trgm_ops``)."""
    return ".".join(quote_identifier(part) for part in name.split("."))


def quote_literal(value: str) -> str:
    """``value`` as an SQL string literal that means the same whatever the session's
    ``standard_conforming_strings`` says, as PostgreSQL's ``quote_literal()`` writes it:
    quotes doubled and, when it holds a backslash, the ``E'...'`` form with backslashes
    doubled (with the setting off, a backslash in a plain literal is an escape).

    Raises ValueError for a NUL character, which no SQL string can hold; callers check
    for it first, to name the view or setting it comes from.
    """
    if "\0" in value:
        raise ValueError("An SQL string literal cannot contain a NUL character.")
    quoted = "'" + value.replace("'", "''") + "'"
    if "\\" in value:
        return "E" + quoted.replace("\\", "\\\\")
    return quoted


def quote_role(role: str) -> str:
    """``role`` as it goes in GRANT and REVOKE: always the role of exactly that name,
    quoted (``"PUBLIC"``, ``"Analytics"`` and ``"o'brien %"`` are roles like any other),
    except ``"public"``, which means the ``PUBLIC`` keyword (every role, present and
    future). PostgreSQL reserves that one lowercase name: no role can be called
    ``public``, so it can only ever mean the keyword."""
    return "PUBLIC" if role == PUBLIC_KEYWORD_ROLE else quote_identifier(role)
