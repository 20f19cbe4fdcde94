"""SQL predicates for LanceDB (DataFusion SQL), built only from quoted, escaped literals.

Values reaching here are already validated by pydantic patterns (labels, ids), but every
literal is still quoted and escaped: a value is never formatted into SQL as it came.
"""

from __future__ import annotations

from collections.abc import Iterable

from clipsearch.search import Filters

_ALLOWED_COLUMNS = frozenset({"id", "dataset", "category", "split"})


def quote(value: str) -> str:
    """A SQL string literal: single quotes doubled, NUL refused."""
    if "\x00" in value:
        raise ValueError("NUL character in a filter value")
    return "'" + value.replace("'", "''") + "'"


def in_list(column: str, values: Iterable[str], *, negate: bool = False) -> str:
    if column not in _ALLOWED_COLUMNS:
        raise ValueError(f"not a filterable column: {column!r}")
    literals = ", ".join(quote(v) for v in values)
    if not literals:
        raise ValueError("in_list needs at least one value")
    return f"{column} {'NOT IN' if negate else 'IN'} ({literals})"


def and_all(parts: Iterable[str | None]) -> str | None:
    present = [p for p in parts if p]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return " AND ".join(f"({p})" for p in present)


def filters_sql(filters: Filters | None) -> str | None:
    """OR within a field (``IN``), AND across fields; None when there is nothing to filter."""
    if filters is None or filters.is_empty():
        return None
    return and_all(in_list(field, values) for field, values in filters.items())


def search_sql(filters: Filters | None, exclude_ids: Iterable[str] = ()) -> str | None:
    """The prefilter of a search leg: the plan's filters minus the excluded ids."""
    excluded = list(exclude_ids)
    return and_all(
        [filters_sql(filters), in_list("id", excluded, negate=True) if excluded else None]
    )


def rowid_in(rowids: Iterable[int]) -> str:
    """Rows by LanceDB row id (integers only, formatted from ``int``)."""
    literals = ", ".join(str(int(r)) for r in rowids)
    if not literals:
        raise ValueError("rowid_in needs at least one row id")
    return f"_rowid IN ({literals})"
