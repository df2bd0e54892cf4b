"""The developer's stack: what `data-pipelines up` / `demo` and the tests start on 127.0.0.1.

A PostgreSQL cluster with the application tables seeded, the OXR sandbox, a Prefect server and
worker with the deployments of prefect.yaml, and the webhook receiver the alerts go to.
Product code (sources, pipelines, flows, environments) never imports it.
"""
