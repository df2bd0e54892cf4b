"""The pipe's COPY column mapping, translated from Snowflake SQL to DuckDB SQL (sqlglot only).

Shared by the local pipe (`local_runtime.snowpipe`, in the project's environment) and the
rehearsal's Snowflake stand-in (`rehearsal.snowflake_standin`, in its own environment,
`rehearsal/snowflake_standin_env/`): so this module imports nothing but the standard library
and sqlglot, which both environments have (each at its own locked version).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlglot import exp

# Stage metadata columns the local pipe provides, by the name of the staged-rows column.
_STAGE_METADATA = {
    "METADATA$FILENAME": "stage_path",
    "METADATA$START_SCAN_TIME": "scan_time",
    "METADATA$FILE_LAST_MODIFIED": "last_modified",
}
_STRUCTURED_TYPES = {exp.DataType.Type.JSON, exp.DataType.Type.VARIANT, exp.DataType.Type.OBJECT}


@dataclass(frozen=True)
class CopyMapping:
    """The pipe's `COPY INTO <table> (<columns>) FROM (SELECT ... FROM @stage)`."""

    table: str
    columns: tuple[str, ...]
    select_sql: str  # Snowflake SQL, as shipped


def json_to_duckdb(node: exp.Expression) -> exp.Expression:
    # Snowflake VARIANT/OBJECT columns become DuckDB JSON (queryable with ->, ->>).
    if isinstance(node, exp.DataType) and node.this in _STRUCTURED_TYPES:
        return exp.DataType.build("JSON")
    return node


@functools.cache
def copy_select_for_duckdb(mapping: CopyMapping, staged_relation: str) -> str:
    """The COPY's SELECT as DuckDB SQL over `staged_relation(json, stage_path, scan_time, ...)`.

    `$1` (the staged JSON document) becomes the `json` column; `$1:x::TYPE` keeps Snowflake's
    meaning (the value of x, cast), which in DuckDB is `(json ->> '$.x')::TYPE`; a bare `$1:x`
    stays JSON. `METADATA$...` columns come from the staged relation.
    """
    import sqlglot

    tree = sqlglot.parse_one(mapping.select_sql, read="snowflake")

    def staged_document(node: exp.Expression) -> exp.Expression:
        return exp.column("json") if isinstance(node, exp.Parameter) else node

    def rewrite(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Cast)
            and isinstance(node.this, exp.JSONExtract)
            and node.to.this not in _STRUCTURED_TYPES
        ):
            extract = node.this
            return exp.Cast(
                this=exp.JSONExtractScalar(this=extract.this, expression=extract.expression),
                to=node.to,
            )
        if isinstance(node, exp.Column) and node.name.upper().startswith("METADATA$"):
            try:
                return exp.column(_STAGE_METADATA[node.name.upper()])
            except KeyError:
                raise ValueError(f"the local pipe does not provide {node.name}") from None
        return node

    tree = tree.transform(staged_document).transform(rewrite).transform(json_to_duckdb)
    tree.set("from_", exp.From(this=exp.to_table(staged_relation)))
    return tree.sql(dialect="duckdb")
