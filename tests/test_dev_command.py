"""``manage.py dev`` keeps its threads on one CPU, where they do not preempt each other on
wake-up (``SCHED_BATCH``), unless told ``--all-cpus``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from langgraph_sdk import get_sync_client

from agentserver.management.commands.dev import batch_scheduling, pin_to_one_cpu
from tests.live import LiveServer

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs CPU affinity and at least two CPUs to choose from",
)


def cpus_of_each_thread(pid: int) -> dict[int, set[int]]:
    return {int(task): os.sched_getaffinity(int(task)) for task in os.listdir(f"/proc/{pid}/task")}


def policy_of_each_thread(pid: int) -> dict[int, int]:
    return {int(task): os.sched_getscheduler(int(task)) for task in os.listdir(f"/proc/{pid}/task")}


def serve_one_run(live: LiveServer) -> None:
    """A run, so the process has started its request, run and checkpoint threads."""
    with get_sync_client(url=live.url, api_key=None) as sdk:
        thread = sdk.threads.create()
        result = sdk.runs.wait(thread["thread_id"], "echo", input={"items": ["t"]})
        assert result == {"items": ["t", "echo:t"]}


def test_dev_runs_every_thread_on_the_one_cpu_it_started_on() -> None:
    live = LiveServer(mode="dev").start()
    try:
        serve_one_run(live)
        assert live.web is not None
        masks = cpus_of_each_thread(live.web.pid)
        assert len(masks) > 5  # the event loop, request, run, checkpoint and sweeper threads
        assert all(len(mask) == 1 for mask in masks.values()), masks
        assert len(set().union(*masks.values())) == 1, masks
        (cpu,) = set().union(*masks.values())
        policies = policy_of_each_thread(live.web.pid)
        assert set(policies.values()) == {os.SCHED_BATCH}, policies
        assert f"on CPU {cpu} (--all-cpus for every CPU)" in Path(live.tmp / "web.log").read_text()
    finally:
        live.stop()


def test_dev_with_all_cpus_keeps_the_cpus_it_was_given() -> None:
    live = LiveServer(mode="dev", dev_args=["--all-cpus"]).start()
    try:
        serve_one_run(live)
        assert live.web is not None
        given = os.sched_getaffinity(0)  # the test process's, which the server inherits
        assert all(mask == given for mask in cpus_of_each_thread(live.web.pid).values())
        assert set(policy_of_each_thread(live.web.pid).values()) == {os.sched_getscheduler(0)}
        assert "on every CPU" in Path(live.tmp / "web.log").read_text()
    finally:
        live.stop()


def test_dev_serves_on_every_cpu_where_pinning_is_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox that refuses ``sched_setaffinity`` must not stop the server from starting."""

    def refuse(pid: int, cpus: set[int]) -> None:
        raise PermissionError(1, "Operation not permitted")

    given = os.sched_getaffinity(0)
    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert pin_to_one_cpu() is None
    assert os.sched_getaffinity(0) == given



def test_a_refused_scheduling_policy_leaves_the_thread_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int, policy: int, param: os.sched_param) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse)
    before = os.sched_getscheduler(0)
    batch_scheduling(0)
    assert os.sched_getscheduler(0) == before
