"""Every side effect ends inside its job's lease, and every job fits its function's timeout:
otherwise a second attempt could start while the first one's request is still in flight, or a
job would be handed back forever for want of time."""

from __future__ import annotations

from typing import Any

import pytest

import jobkit_apps.email as email_types
import jobkit_apps.syndication as syndication_types
from jobkit import aws
from jobkit.jobs import Guarantee, registered_job_types
from jobkit.worker import lease_seconds
from syndication_worker.partners import PartnerConfig
from tests.conftest import template

RESOURCES: dict[str, Any] = template()["Resources"]
PARAMETERS: dict[str, Any] = template()["Parameters"]


def _default(value: Any) -> Any:
    return PARAMETERS[value["Ref"]]["Default"] if isinstance(value, dict) else value


def _worker_functions() -> dict[str, tuple[str, float]]:
    """Queue name (JOBKIT_WORKER_QUEUE) -> (function, its timeout), from the template."""
    found = {}
    for name, resource in RESOURCES.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "JOBKIT_WORKER_QUEUE" in variables:
            timeout = float(_default(resource["Properties"]["Timeout"]))
            found[variables["JOBKIT_WORKER_QUEUE"]] = (name, timeout)
    return found


# The types jobkit ships (other tests declare their own types in this process too).
BUILT_IN = sorted(
    name
    for name, declared in registered_job_types().items()
    if declared.payload.__module__.startswith("jobkit_apps.")
)


@pytest.mark.parametrize("job_type", BUILT_IN)
def test_every_built_in_job_fits_its_functions_timeout(job_type: str) -> None:
    # Given a built-in job type and the function of its queue
    declared = registered_job_types()[job_type]
    function, timeout = _worker_functions()[declared.queue]
    # Then one invocation can hold the job's whole lease (its timeout and the outcome write)
    # and a second to spare: else the worker hands it back for want of time, again and again
    assert timeout >= lease_seconds(declared) + 1, function


@pytest.mark.parametrize("job_type", email_types.ALL, ids=lambda t: t.name)
def test_an_email_send_gives_up_inside_the_jobs_timeout(job_type: Any) -> None:
    # Given SES's client: one attempt, connect and read timeouts
    # Then a send that hangs gives up before the job's own timeout (and so its lease) ends
    assert aws.worst_case_seconds("sesv2") < job_type.timeout


def test_a_partner_request_gives_up_inside_the_deliverys_timeout() -> None:
    # Given the longest timeout a partner may be configured with
    longest = PartnerConfig.model_fields["timeout_seconds"].metadata
    cap = next(m.le for m in longest if getattr(m, "le", None) is not None)
    # Then a POST that hangs that long still ends inside the delivery's timeout
    assert cap < syndication_types.DELIVER.timeout


def test_the_clients_are_built_with_those_timeouts() -> None:
    # Given jobkit's shared clients, When they are made
    aws.reset_clients()
    ses, dynamodb = aws.client("sesv2"), aws.dynamodb()
    # Then they carry the timeouts and attempts the worst case is computed from
    assert (ses.meta.config.connect_timeout, ses.meta.config.read_timeout) == (
        aws.CONNECT_TIMEOUT,
        aws.READ_TIMEOUT,
    )
    assert ses.meta.config.retries["total_max_attempts"] == 1
    assert dynamodb.meta.config.retries["total_max_attempts"] == aws.DEFAULT_ATTEMPTS
    assert aws.worst_case_seconds("sesv2") == aws.CONNECT_TIMEOUT + aws.READ_TIMEOUT
    aws.reset_clients()


def test_the_guarantees_of_the_built_in_types_are_the_documented_ones() -> None:
    # README "Side effects" names these; a change here must change the README too
    types = registered_job_types()
    at_most_once = [n for n in BUILT_IN if types[n].guarantee is Guarantee.AT_MOST_ONCE]
    assert at_most_once == ["email.send_documents_reminder", "email.send_welcome"]
