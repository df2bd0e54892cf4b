-- 020: exchange-rate files in S3 -> Snowpipe (AUTO_INGEST) -> SNOWPIPE.OPEN_EXCHANGE_RATES.
--
-- Applied after 010_foundation.sql by `data-pipelines apply snowflake` (`--dry-run` prints it)
-- with the admin connection of [snowflake_admin.credentials], a user that holds ACCOUNTADMIN
-- (storage integrations) and SYSADMIN. Placeholders, filled from dlt config (settings, not
-- secrets): {{ BUCKET_URL }} is the production bucket, [data_pipelines] bucket_url
-- (s3://<bucket>), and {{ AWS_ROLE_ARN }} the IAM role Snowflake assumes to read it,
-- [snowflake_admin] aws_role_arn. Then wire S3 to the pipe's SQS queue: docs/production.md.
--
-- Every part sets its role first, never relying on what an earlier file left active.
--
-- Idempotent: objects that hold state (integration, table, pipe and its load history) are
-- created IF NOT EXISTS, so re-applying never drops loaded rows or makes the pipe forget what
-- it loaded; only the stateless view is replaced. Changing the pipe's COPY needs the pause /
-- recreate procedure in docs/exchange_rates.md.
--
-- One source of truth for the shape: the local stack (local_runtime/snowpipe.py) executes this
-- file's CREATE SCHEMA, CREATE TABLE, CREATE VIEW and the pipe's COPY column mapping against
-- DuckDB, and the tests run that mapping over the files the pipeline really writes.
-- Keep statements separated by a semicolon at the end of a line, and no semicolons in comments.

-- Storage integrations are account-level objects: ACCOUNTADMIN creates it and lets SYSADMIN,
-- which owns the SNOWPIPE database, build the stage on it.
USE ROLE ACCOUNTADMIN;

CREATE STORAGE INTEGRATION IF NOT EXISTS DATA_PIPELINES_S3
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = '{{ AWS_ROLE_ARN }}'
  STORAGE_ALLOWED_LOCATIONS = ('{{ BUCKET_URL }}/exchange-rates/')
  COMMENT = 'data-pipelines: read-only access to s3://<bucket>/exchange-rates/ for Snowpipe';

GRANT USAGE ON INTEGRATION DATA_PIPELINES_S3 TO ROLE SYSADMIN;

-- Everything else belongs to SYSADMIN, like the SNOWPIPE database it lives in (010).
USE ROLE SYSADMIN;

CREATE SCHEMA IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES;

-- dlt writes newline-delimited JSON, gzip-compressed (*.jsonl.gz), one row per file.
CREATE FILE FORMAT IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_JSONL
  TYPE = JSON
  COMPRESSION = AUTO
  STRIP_OUTER_ARRAY = FALSE;

-- The watched prefix holds data files only (dlt's own state lives beside it, in _dlt_exchange_rates/).
CREATE STAGE IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_STAGE
  URL = '{{ BUCKET_URL }}/exchange-rates/'
  STORAGE_INTEGRATION = DATA_PIPELINES_S3
  FILE_FORMAT = SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_JSONL;

-- Raw, append-only: every file the pipe loads adds its row. Users read EXCHANGE_RATES_LATEST.
CREATE TABLE IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES (
  RATE_DATE DATE NOT NULL,
  OXR_TIMESTAMP TIMESTAMP_TZ NOT NULL,
  BASE VARCHAR NOT NULL,
  RATES VARIANT NOT NULL,
  _LOADED_AT TIMESTAMP_TZ NOT NULL,
  _DLT_LOAD_ID VARCHAR,
  _FILE_NAME VARCHAR NOT NULL,
  _INGESTED_AT TIMESTAMP_LTZ
);

CREATE PIPE IF NOT EXISTS SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE
  AUTO_INGEST = TRUE
  COMMENT = 'data-pipelines: exchange-rate files under s3://<bucket>/exchange-rates/'
AS
COPY INTO SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES
  (RATE_DATE, OXR_TIMESTAMP, BASE, RATES, _LOADED_AT, _DLT_LOAD_ID, _FILE_NAME, _INGESTED_AT)
FROM (
  SELECT
    $1:rate_date::DATE,
    $1:timestamp::TIMESTAMP_TZ,
    $1:base::VARCHAR,
    $1:rates,
    $1:_loaded_at::TIMESTAMP_TZ,
    $1:_dlt_load_id::VARCHAR,
    METADATA$FILENAME,
    METADATA$START_SCAN_TIME
  FROM @SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_STAGE
)
FILE_FORMAT = (FORMAT_NAME = 'SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_JSONL');

-- The loader role runs `data-pipelines verify` / data-freshness: SYSTEM$PIPE_STATUS needs
-- MONITOR (or OPERATE) on the pipe, COPY_HISTORY needs it or a privilege on the table (010).
GRANT MONITOR ON PIPE SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_PIPE TO ROLE SVC_DLT;

-- What users query: exactly one row per (RATE_DATE, BASE). The newest publication wins
-- (a day's end-of-day historical snapshot beats an intraday latest.json), then the newest
-- fetch, then the newest ingestion, so reruns and overlapping backfills never double-count.
CREATE OR REPLACE VIEW SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES_LATEST AS
SELECT RATE_DATE, BASE, OXR_TIMESTAMP, RATES, _LOADED_AT, _FILE_NAME
FROM SNOWPIPE.OPEN_EXCHANGE_RATES.EXCHANGE_RATES
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY RATE_DATE, BASE
  ORDER BY OXR_TIMESTAMP DESC, _LOADED_AT DESC, _INGESTED_AT DESC
) = 1;
