"""A view's DDL: rendering, parameter binding, parsing, rewriting and fingerprints.

Everything here but :func:`render_view` is pure. ``render_view`` needs a connection
only to let the database driver bind the parameters (client-side, no round trip).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Set as AbstractSet
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pglast.parser import ParseError, parse_sql_json, scan

from .exceptions import InvalidViewError
from .indexes import IndexDefinition, index_definitions
from .sql import qualified_name
from .views import (
    BasePostgresView,
    PostgresMaterialisedViewMixin,
    column_comments,
    describe,
    quote_identifier,
    view_comment,
    view_options,
)

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper


@dataclass(frozen=True)
class RenderedView:
    """One declared view rendered for one database: all a plan needs to know of it."""

    view: type[BasePostgresView]
    name: str
    database: str
    materialized: bool
    hidden: bool
    with_data: bool
    select_sql: str
    indexes: tuple[IndexDefinition, ...]
    references: frozenset[str]
    declared_dependencies: frozenset[str]
    schema_references: tuple[RelationReference, ...] = ()
    # For analysts: part of the definition (options) or applied in place (the rest).
    options: tuple[str, ...] = ()
    comment: str | None = None
    column_comments: tuple[tuple[str, str], ...] = ()
    grant_select_to: frozenset[str] = frozenset()

    @property
    def dependencies(self) -> frozenset[str]:
        return self.references | self.declared_dependencies

    @property
    def kind(self) -> str:
        return "materialized view" if self.materialized else "view"

    def create_statements(
        self, schema: str, select_sql: str | None = None, *, populate: bool = True
    ) -> list[str]:
        """CREATE statements of the view and its indexes in ``schema``.

        ``select_sql`` replaces the view's own SELECT, for one rewritten to read from a
        staging schema; ``populate=False`` leaves a materialized view empty (to read its
        definition back, say).
        """
        target = qualified_name(schema, self.name)
        body = self.select_sql if select_sql is None else select_sql
        if self.materialized:
            statements = [f"CREATE MATERIALIZED VIEW {target} AS {body}\nWITH NO DATA"]
            if self.with_data and populate:
                # REFRESH writes frozen rows, which a transaction whose snapshot predates
                # this one still reads; rows written by CREATE ... AS are invisible to it
                # (an old snapshot would read the new view as empty).
                statements.append(f"REFRESH MATERIALIZED VIEW {target}")
        else:
            options = f" WITH ({', '.join(self.options)})" if self.options else ""
            statements = [f"CREATE VIEW {target}{options} AS {body}"]
        statements += [index.create_sql(schema, self.name) for index in self.indexes]
        return statements


def render_view(
    view: type[BasePostgresView], connection: BaseDatabaseWrapper, schema: str
) -> RenderedView:
    """Render ``view`` for ``connection``: bind its parameters, parse its SQL, find the
    views it reads and build its indexes. Raises InvalidViewError naming the class."""
    sql, params = view.get_sql_and_params()
    # No statement can carry a NUL: refuse it here, naming the view, rather than let the
    # driver or the parser fail on it.
    if "\0" in sql or any(isinstance(value, str) and "\0" in value for value in params):
        where = "SQL" if "\0" in sql else "params"
        raise InvalidViewError(
            f"View {describe(view)} has a NUL character in its {where}, which PostgreSQL "
            "does not accept. Remove it (a column that may hold one needs a bytea value)."
        )
    try:
        # The driver binds the parameters client-side, exactly as it would for execute().
        # Without parameters nor a % to unescape, there is nothing for it to do.
        bound: str = (
            connection.ops.compose_sql(sql, params)  # type: ignore[attr-defined]
            if params or "%" in sql
            else sql
        )
    except (TypeError, ValueError, IndexError, KeyError, connection.Database.Error) as error:  # type: ignore[attr-defined]
        raise InvalidViewError(
            f"View {describe(view)}: its SQL and params do not match ({error}). Write a "
            "literal % as %% and pass one value in `params` for each %s."
        ) from error
    parsed = parse_select(bound, view)
    materialized = issubclass(view, PostgresMaterialisedViewMixin)
    return RenderedView(
        view=view,
        name=view.view_name,
        database=view.database,
        materialized=materialized,
        hidden=bool(view.hidden),
        with_data=bool(getattr(view, "with_data", True)),
        select_sql=parsed.sql,
        indexes=tuple(index_definitions(view)) if materialized else (),
        references=parsed.references(schema),
        declared_dependencies=frozenset(dep.view_name for dep in view.view_dependencies),
        schema_references=parsed.schema_references(schema),
        options=view_options(view),
        comment=view_comment(view),
        column_comments=tuple(sorted(column_comments(view).items())),
        grant_select_to=frozenset() if view.hidden else frozenset(view.grant_select_to),
    )


@dataclass(frozen=True)
class RelationReference:
    """A schema-qualified relation the query reads, and where its schema name is written
    (character offsets into the SQL, end excluded)."""

    schema: str
    name: str
    schema_start: int
    schema_end: int


@dataclass(frozen=True)
class ParsedSelect:
    sql: str
    relations: tuple[tuple[str, str, int, str | None], ...]  # schema, name, byte offset, catalog
    # Where ``sql`` starts in the text that was parsed (characters).
    start: int = 0

    def references(self, schema: str) -> frozenset[str]:
        return frozenset(name for owner, name, _, _ in self.relations if owner == schema)

    def schema_references(self, schema: str) -> tuple[RelationReference, ...]:
        """Where the query names ``schema``: found from the parser's locations and the
        scanner's tokens, so that a rewrite never touches literals or comments."""
        wanted = [relation for relation in self.relations if relation[0] == schema]
        if not wanted:
            return ()
        encoded = self.sql.encode()
        # The parser reports byte offsets; the scanner, character offsets.
        tokens = list(scan(self.sql))
        token_at = {token.start: index for index, token in enumerate(tokens)}
        references = []
        for owner, name, byte_offset, catalog in wanted:
            index = token_at[len(encoded[:byte_offset].decode())]
            if catalog:
                index += 2  # catalog . schema . name
            token = tokens[index]
            references.append(RelationReference(owner, name, token.start, token.end + 1))
        return tuple(references)


def parse_select(sql: str, view: type[BasePostgresView] | None = None) -> ParsedSelect:
    """Parse the view's SELECT once, with PostgreSQL's own parser: check it is exactly one
    query, keep the text of that statement alone and collect the schema-qualified
    relations it reads.

    The text kept runs from the statement's first token to its last, as the parser and
    its scanner locate them: comments before or after it, blanks and semicolons are left
    out, so that the DDL written around it never ends inside a ``--`` comment.
    """
    label = f"View {describe(view)}" if view is not None else "The SQL"
    if "\0" in sql:
        raise InvalidViewError(
            f"{label} has SQL that contains a NUL character, which PostgreSQL does not "
            "accept in a statement. Remove it from the view's `sql` (or `get_queryset`)."
        )
    # The schema-qualified relations are collected as the JSON is decoded (one pass).
    range_vars: list[dict[str, Any]] = []

    def collect(node: dict[str, Any]) -> dict[str, Any]:
        range_var = node.get("RangeVar")
        if isinstance(range_var, dict) and range_var.get("schemaname"):
            range_vars.append(range_var)
        return node

    try:
        tree = json.loads(parse_sql_json(sql), object_hook=collect)
    except ParseError as error:
        raise InvalidViewError(
            f"{label} has SQL that PostgreSQL cannot parse: {error}. "
            "Fix the view's `sql` (or `get_queryset`)."
        ) from error
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        raise InvalidViewError(
            f"{label} must have exactly one SELECT (or VALUES) statement as its SQL; found "
            f"{len(statements)} statement(s). "
            + (
                "Set `sql` to the query the view shows."
                if not statements
                else "Keep one query: combine the others into it (WITH ..., UNION, a "
                "subquery) or declare them as views of their own."
            )
        )
    statement = statements[0]
    select = statement.get("stmt", {}).get("SelectStmt")
    if select is None:
        kind = next(iter(statement.get("stmt", {})), "unknown statement")
        raise InvalidViewError(
            f"{label} has a {kind.removesuffix('Stmt')} statement as its SQL, not a query. "
            "Set `sql` to a SELECT (or VALUES, or WITH ... SELECT) statement."
        )
    if select.get("intoClause"):
        raise InvalidViewError(
            f"{label} has SELECT ... INTO as its SQL, which creates a table. Remove the INTO "
            "clause: the view itself holds the query's rows."
        )
    start, end = _statement_span(sql, statement)
    text = sql[start:end]
    # The parser's locations are byte offsets into ``sql``; keep them relative to ``text``.
    skipped = len(sql[:start].encode())
    relations = [
        (
            range_var["schemaname"],
            range_var.get("relname", ""),
            range_var.get("location", 0) - skipped,
            range_var.get("catalogname"),
        )
        for range_var in range_vars
    ]
    return ParsedSelect(text, tuple(relations), start)


COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})


def _statement_span(sql: str, statement: dict[str, Any]) -> tuple[int, int]:
    """Character offsets (end excluded) of the one statement of ``sql``, from its first
    token to its last. The parser gives the statement's bytes (``stmt_location``, and
    ``stmt_len``, which is 0 for "up to the end" and includes any comments before the
    semicolon); the scanner's tokens trim the comments and blanks on either side."""
    encoded = sql.encode()
    first_byte = statement.get("stmt_location", 0)
    length = statement.get("stmt_len", 0)
    last_byte = first_byte + length if length else len(encoded)
    first = len(encoded[:first_byte].decode())
    last = len(encoded[:last_byte].decode())
    if "--" not in sql and "/*" not in sql:
        # No comment to trim (the common case): blanks alone, without the scanner.
        text = sql[first:last]
        start = first + len(text) - len(text.lstrip())
        return start, first + len(text.rstrip())
    tokens = [
        token
        for token in scan(sql)
        if token.name not in COMMENT_TOKENS and first <= token.start and token.end < last
    ]
    return tokens[0].start, tokens[-1].end + 1


def splice_schema(
    select_sql: str,
    references: Iterable[RelationReference],
    target_schema: str,
    names: Iterable[str] | AbstractSet[str],
) -> str:
    """Point the given references (for the relations called ``names``) at
    ``target_schema``, by replacing the schema token the parser located for each."""
    return splice_schemas(select_sql, references, dict.fromkeys(names, target_schema))


def splice_schemas(
    select_sql: str, references: Iterable[RelationReference], targets: Mapping[str, str]
) -> str:
    """Point each reference to a relation named in ``targets`` at the schema given for
    it, by replacing the schema token the parser located for each."""
    chosen = sorted(
        (reference for reference in references if reference.name in targets),
        key=lambda reference: reference.schema_start,
        reverse=True,
    )
    text = select_sql
    for reference in chosen:
        replacement = quote_identifier(targets[reference.name])
        text = text[: reference.schema_start] + replacement + text[reference.schema_end :]
    return text


def fingerprint(view: RenderedView, dependency_fingerprints: Iterable[str]) -> str:
    """A hash of everything that defines the view in the database: its kind, name, SQL,
    indexes, options and the fingerprints of the views it depends on (so a change
    propagates). Comments and grants are not part of it: they change in place."""
    digest = hashlib.sha256()
    parts = [
        view.kind,
        view.name,
        view.select_sql,
        "with data" if view.with_data else "with no data",
        *(index.create_sql("", view.name) for index in view.indexes),
        # Only when set, so that views without options keep the fingerprints they had.
        *(f"option {option}" for option in view.options),
        *sorted(dependency_fingerprints),
    ]
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()
