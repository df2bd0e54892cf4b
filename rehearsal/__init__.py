"""The production rehearsal: production's code, unchanged, on stand-ins on 127.0.0.1.

The Snowflake stand-in (fakesnow, in its own environment), the Snowpipe stand-in, moto for S3
and Secrets Manager, and the scenarios `data-pipelines rehearse` runs (docs/rehearsal.md).
Product code never imports it.
"""
