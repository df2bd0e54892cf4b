"""The local environment's runtime adapters: what `environments/local.py` calls during runs.

The local warehouse (DuckDB files named after the Snowflake databases, and their write lock),
the local pipe that loads bucket files as Snowpipe would, and the record of the local
PostgreSQL cluster (its DSN, the application database's fallback). Standard library and
DuckDB only at import; the Snowflake stand-in's own environment imports `snowpipe_sql`.
"""
