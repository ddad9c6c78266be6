"""The shipped prefect.yaml: a deployment per flow, each entrypoint a flow that exists, each
`config` parameter valid for that flow's config type, all on the process work pool."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect import Flow
from prefect.utilities.importtools import import_object

ROOT = Path(__file__).resolve().parents[2]
# corpus and encode: through the flows that run them as the CLI does (pipelines/deployments.py)
FLOWS = {
    "end-to-end",
    "corpus-deployment",
    "encode-deployment",
    "train",
    "evaluate",
    "preferences",
    "preference_tuning",
}


def test_every_deployment_names_a_flow_and_its_parameters_validate_against_its_config():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    flows = set()
    for deployment in spec["deployments"]:
        flow = import_object(deployment["entrypoint"])
        assert isinstance(flow, Flow), deployment["entrypoint"]
        flows.add(flow.name)
        assert deployment["work_pool"]["name"] == "gpt2lab"
        config_type = inspect.signature(flow.fn).parameters["config"].annotation
        if isinstance(config_type, str):  # `from __future__ import annotations`
            config_type = flow.fn.__globals__[config_type]
        config_type.model_validate(deployment["parameters"]["config"])  # raises if invalid
    assert flows == FLOWS  # one deployment per flow, none missing
    (nightly,) = [d for d in spec["deployments"] if d["name"] == "nightly"]
    assert nightly["concurrency_limit"] == 1
    assert nightly["schedules"][0]["cron"]
