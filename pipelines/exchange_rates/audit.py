"""The exchange-rates pipeline's audit: its load info and trace, as files in the bucket.

dlt's load info and trace go to the same bucket, beside dlt's state and never under the
watched prefix (Snowpipe would try to load them as rates). They need a sibling pipeline: the
data pipeline's layout is absolute to `exchange-rates/`, so its own `_load_info` table would
land there. Files:
<bucket>/_dlt_exchange_rates_audit/{_load_info,_trace}/<load_id>.<file_id>.jsonl.gz
"""

from __future__ import annotations

import dlt
from dlt.common.pipeline import LoadInfo

from pipelines.environment import Environment
from pipelines.runner import audit_resources, make_pipeline, quiet_audit_schema

AUDIT_PIPELINE_NAME = "exchange_rates_audit"
AUDIT_DATASET = "_dlt_exchange_rates_audit"


def persist_audit(environment: Environment, load_info: LoadInfo) -> LoadInfo:
    """Load a run's LoadInfo and trace as `_load_info`/`_trace` files into the bucket."""
    destination = dlt.destinations.filesystem(bucket_url=environment.bucket_url())
    audit = make_pipeline(AUDIT_PIPELINE_NAME, destination, AUDIT_DATASET)
    with quiet_audit_schema():
        return audit.run(audit_resources(load_info), schema_contract="evolve")
