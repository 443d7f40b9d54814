"""Property-based tests of every operation in our OpenAPI document, with schemathesis.

A production deployment (uvicorn + Celery on Postgres and Redis) gets generated requests, valid
and invalid; no answer may be a 5xx, and answers must match the documented responses. The
deployment is this module's own: fuzzing deletes assistants and prunes threads at random.

The document is generated in-process at collection time, so pytest gets one test per operation
before any server exists (schemathesis' lazy ``from_fixture`` loader does not run on pytest 9);
``test_served_document_is_the_one_fuzzed`` checks the server's ``/openapi.json`` is that document.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import strategies as st
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.live import LiveServer

# Bounded so the module takes under two minutes: a few dozen cases per operation, no stateful
# phase, no example database (each run starts fresh), no shrinking.
MAX_EXAMPLES = 25
# The thread streams end only when the client leaves: there is no response to check.
ENDLESS_STREAMS = r"^/threads/\{thread_id\}/stream(/events)?$"
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
# Path ids of real objects, filled in once the server is up (see ``fuzz_server``).
REAL_IDS: list[dict[str, str]] = []


def openapi_document() -> dict[str, Any]:
    """What ``GET /openapi.json`` serves, as JSON."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return orjson.loads(OpenApiJsonRenderer().render(document, renderer_context={}))


schema = schemathesis.openapi.from_dict(openapi_document()).exclude(path_regex=ENDLESS_STREAMS)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])
schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none", no_shrink=True)


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Half the time, ids of objects that exist: random UUIDs would only ever meet a 404."""
    if not path_parameters:
        return st.just(path_parameters)

    def with_real_ids(real: dict[str, str]) -> dict[str, Any]:
        return {**path_parameters, **{name: real[name] for name in path_parameters if name in real}}

    real = st.deferred(lambda: st.sampled_from(REAL_IDS)).map(with_real_ids)
    return st.one_of(st.just(path_parameters), real)


def create_real_objects(url: str) -> None:
    """A thread with a checkpoint and a run, for ``REAL_IDS``, without waiting on a worker: the run
    is delayed, then cancelled before it starts, so joining or streaming it answers at once."""
    with httpx.Client(base_url=url, timeout=30) as client:
        superstep = {"updates": [{"values": {"items": ["a"]}, "as_node": "echo"}]}
        thread = client.post("/threads", json={"metadata": {"graph_id": "echo"}, "supersteps": [superstep]})
        thread_id = thread.raise_for_status().json()["thread_id"]
        run = client.post(f"/threads/{thread_id}/runs", json={"assistant_id": "echo", "after_seconds": 3600})
        run_id = run.raise_for_status().json()["run_id"]
        client.post(f"/threads/{thread_id}/runs/{run_id}/cancel").raise_for_status()
        REAL_IDS.append({"thread_id": thread_id, "run_id": run_id, "assistant_id": "echo"})


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[LiveServer]:
    live = LiveServer(mode="prod").start()
    create_real_objects(live.url)
    yield live
    live.stop()


def test_document_generates_without_warnings_and_validates() -> None:
    """Every view is annotated: spectacular neither guesses nor renames an operation."""
    call_command("spectacular", "--fail-on-warn", "--validate", "--file", os.devnull)


def test_served_document_is_the_one_fuzzed(fuzz_server: LiveServer) -> None:
    served = httpx.get(f"{fuzz_server.url}/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.json() == openapi_document()


@schema.parametrize()
def test_operation_answers_without_server_errors(case: schemathesis.Case, fuzz_server: LiveServer) -> None:
    case.call_and_validate(base_url=fuzz_server.url, checks=CHECKS, timeout=10)
