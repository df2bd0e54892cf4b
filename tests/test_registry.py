"""The registry is the one place a pipeline is named: everything else follows it or fails here.

No count is written down: each check compares two derived sets, so adding a pipeline to the
registry without its deployment (or a deployment without its pipeline) fails one of them.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from prefect import Flow

import flows
import verify
from data_pipelines_cli.main import build_parser, run_flow_name
from dev_stack.stack import SEEDERS, SEEDS_DIR
from infra.prefect_setup import deployments, load_entrypoint, load_prefect_file
from pipelines import timeouts
from pipelines.registry import PIPELINES, all_flows, application_tables


def _flows_in_modules() -> dict[str, Flow]:
    """Every Prefect flow object defined in a module of flows/, by flow name."""
    found: dict[str, Flow] = {}
    for module_info in pkgutil.iter_modules(flows.__path__):
        module = importlib.import_module(f"flows.{module_info.name}")
        for value in vars(module).values():
            if isinstance(value, Flow) and value.fn.__module__ == module.__name__:
                found[value.name] = value
    return found


def test_prefect_yaml_deploys_every_flow_of_the_registry_exactly_once() -> None:
    deployed = [d.flow_name for d in deployments()]
    assert sorted(deployed) == sorted(set(deployed)), "a flow is deployed twice"
    missing = set(all_flows()) - set(deployed)
    extra = set(deployed) - set(all_flows())
    assert not missing, f"flows of the registry with no deployment in prefect.yaml: {missing}"
    assert not extra, f"prefect.yaml deploys flows the registry does not know: {extra}"


def test_every_deployment_loads_its_flow_with_the_registry_name_and_alerts() -> None:
    flow_specs = all_flows()
    for deployment in deployments():
        loaded = load_entrypoint(deployment.entrypoint)
        assert isinstance(loaded, Flow)
        assert loaded.name == deployment.flow_name
        # the timeout comes from the registry's tasks (and sizes the running-too-long alert)
        assert loaded.timeout_seconds == timeouts.flow_timeout(loaded.name)
        assert flow_specs[loaded.name].tasks
        # alert coverage: every automation selects runs by the `dlt` tag
        assert "dlt" in deployment.tags, f"{deployment.full_name} would never alert"
    raw = load_prefect_file()["deployments"]
    assert all(d["work_pool"]["name"] == "production" for d in raw)


def test_the_flows_in_flows_are_the_registry_flows() -> None:
    assert set(_flows_in_modules()) == set(all_flows())


def test_every_task_of_every_flow_has_a_timeout() -> None:
    defaults = timeouts.default_task_timeouts()
    for name, tasks in timeouts.flow_tasks().items():
        for task in tasks:
            assert defaults[task] > 0, (name, task)
    assert set(timeouts.flow_timeouts()) == set(all_flows())


def test_cli_run_offers_every_pipeline_and_reaches_its_flows() -> None:
    parser = build_parser()
    for spec in PIPELINES.values():
        args = parser.parse_args(["run", spec.command_name])
        assert run_flow_name(args.pipeline, False) == spec.flow_for("run").name  # type: ignore[union-attr]
        refresh = spec.flow_for("full-refresh")
        if refresh is not None:
            assert run_flow_name(spec.command_name, True) == refresh.name
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "no-such-pipeline"])


def test_verify_checks_every_application_table() -> None:
    targets = dict(verify.target_tables(application_tables()))
    for spec in application_tables():
        assert spec.table is not None
        assert targets[verify.warehouse_table(spec)] == (spec.table.primary_key,)
    assert set(verify.user_tables()) == set(targets)


def test_the_local_stack_can_seed_every_application_table() -> None:
    for spec in application_tables():
        assert spec.name in SEEDERS or (SEEDS_DIR / f"{spec.name}.sql").is_file(), (
            f"`data-pipelines up` cannot create {spec.name}'s table: add "
            f"dev_stack/seeds/{spec.name}.sql"
        )
