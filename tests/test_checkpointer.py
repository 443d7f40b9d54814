"""DjangoCheckpointSaver: LangGraph's conformance suite on Postgres and SQLite, plus what it misses.

The suite only calls async methods, so it runs twice: on the saver itself (async methods
on its thread pool) and on ``SyncPathSaver``, whose async methods call the public sync
ones, which proves the sync path.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, TypedDict, TypeVar

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.test_utils import generate_checkpoint, generate_metadata
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from threads.checkpointer import DjangoCheckpointSaver
from threads.models import CheckpointBlob

T = TypeVar("T")
DATABASES = ["default", "sqlite"]

pytestmark = [
    pytest.mark.django_db(databases=DATABASES, transaction=True),
    pytest.mark.parametrize("alias", DATABASES),
]


class SyncPathSaver(DjangoCheckpointSaver):
    """Each async method calls its public sync method in a thread (closing that thread's
    connection after), so the conformance suite exercises the sync implementation."""

    async def _sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            try:
                return fn(*args, **kwargs)
            finally:
                connections[self.using].close()

        return await asyncio.to_thread(call)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._sync(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, **kwargs: Any) -> AsyncIterator[CheckpointTuple]:
        for item in await self._sync(lambda: [*self.list(config, **kwargs)]):
            yield item

    async def aput(self, *args: Any) -> RunnableConfig:
        return await self._sync(self.put, *args)

    async def aput_writes(self, *args: Any, **kwargs: Any) -> None:
        await self._sync(self.put_writes, *args, **kwargs)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._sync(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._sync(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._sync(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._sync(self.prune, thread_ids, strategy=strategy)


# ------------------------------------------------------------------ conformance


@pytest.mark.parametrize("saver_class", [DjangoCheckpointSaver, SyncPathSaver])
async def test_passes_langgraph_conformance_suite(
    alias: str, saver_class: type[DjangoCheckpointSaver]
) -> None:
    @checkpointer_test(name=f"{saver_class.__name__}[{alias}]")
    async def factory() -> AsyncIterator[DjangoCheckpointSaver]:
        yield saver_class(alias)

    report = await validate(factory)
    failures = {name: result.failures for name, result in report.results.items() if not result.passed}
    assert failures == {}
    tested = {name for name, result in report.results.items() if result.detected and result.tests_passed}
    assert tested == {capability.value for capability in ALL_CAPABILITIES}


# ----------------------------------------------------------------- what it misses


def put(
    saver: DjangoCheckpointSaver,
    thread_id: str,
    values: dict,
    new_versions: dict,
    *,
    parent: RunnableConfig | None = None,
    config_extra: dict | None = None,
    **metadata: Any,
) -> RunnableConfig:
    """Put one checkpoint whose channel versions are the parent's updated by ``new_versions``."""
    previous = saver.get_tuple(parent) if parent else None
    versions = {**(previous.checkpoint["channel_versions"] if previous else {}), **new_versions}
    checkpoint = generate_checkpoint(channel_values=values, channel_versions=versions)
    configurable = {"thread_id": thread_id, "checkpoint_ns": ""}
    if parent:
        configurable["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
    config: RunnableConfig = {"configurable": configurable, **(config_extra or {})}
    return saver.put(config, checkpoint, generate_metadata(**metadata), new_versions)


def thread(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    configurable = {"thread_id": thread_id}
    return {
        "configurable": {**configurable, "checkpoint_id": checkpoint_id} if checkpoint_id else configurable
    }


def fetch(saver: DjangoCheckpointSaver, config: RunnableConfig) -> CheckpointTuple:
    found = saver.get_tuple(config)
    assert found is not None
    return found


def test_merges_config_into_checkpoint_metadata(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    config_extra = {"metadata": {"user": "alice", "nested": {"not": "copied"}}}
    thread_id = str(uuid.uuid4())
    stored = put(saver, thread_id, {}, {}, config_extra=config_extra, writes={"node": 1})
    stored_config: RunnableConfig = {
        "configurable": {**stored["configurable"], "run_id": "run-1", "__hidden": "x"}
    }
    saver.put(stored_config, generate_checkpoint(), generate_metadata(step=1), {})

    first = dict(fetch(saver, stored).metadata)
    second = dict(fetch(saver, thread(thread_id)).metadata)
    assert first["user"] == "alice" and "nested" not in first
    assert "writes" not in first and "thread_id" not in first
    assert second["run_id"] == "run-1" and "__hidden" not in second
    assert [t.metadata["step"] for t in saver.list(None, filter={"user": "alice"})] == [0]


def test_strips_nul_characters_from_metadata(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    config_extra = {"metadata": {"from_config": "con\x00fig"}}
    stored = put(
        saver,
        str(uuid.uuid4()),
        {},
        {},
        config_extra=config_extra,
        source="in\x00put",
        deep={"k\x00ey": ["a\x00b"]},
    )

    metadata = dict(fetch(saver, stored).metadata)
    assert (metadata["source"], metadata["from_config"]) == ("input", "config")
    assert metadata["deep"] == {"key": ["ab"]}
    assert len([*saver.list(None, filter={"source": "in\x00put"})]) == 1


@pytest.mark.parametrize(
    "key",
    ["a') OR 1=1 --", "source' OR '1'='1", 'source"] OR 1=1 --', "$.source", "source__contains", "a\x00"],
)
def test_malicious_filter_key_matches_nothing(alias: str, key: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    put(saver, str(uuid.uuid4()), {}, {}, source="input")

    assert [*saver.list(None, filter={key: "input"})] == []
    assert len([*saver.list(None, filter={"source": "input"})]) == 1


def test_reads_and_writes_in_constant_queries(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    thread_id, parent = str(uuid.uuid4()), None
    with CaptureQueriesContext(connections[alias]) as writes:
        for step in range(5):
            new_versions = {"a": step + 1, "b": step + 1}
            parent = put(
                saver, thread_id, {"a": [step], "b": {"n": step}}, new_versions, parent=parent, step=step
            )
            saver.put_writes(parent, [("a", [9]), ("b", {}), ("__error__", "boom")], task_id=f"task-{step}")
    inserts = [q["sql"] for q in writes.captured_queries if q["sql"].startswith(("INSERT", "WITH"))]
    # put: blobs, row; put_writes: regular, special (each one statement on Postgres)
    per_call = 1 if connections[alias].vendor == "postgresql" else 2
    assert len(inserts) == 5 * (per_call + per_call)

    with CaptureQueriesContext(connections[alias]) as reads:
        tuples = [*saver.list(thread(thread_id))]
        latest = fetch(saver, thread(thread_id))
    assert len(reads) == 3 + 3  # list: rows, blobs, writes; get_tuple: the same
    assert [t.checkpoint["channel_values"]["a"] for t in tuples] == [[4], [3], [2], [1], [0]]
    assert [len(t.pending_writes or ()) for t in tuples] == [3] * 5
    assert latest.checkpoint == tuples[0].checkpoint


class TwoPerPageSaver(DjangoCheckpointSaver):
    list_page_size = 2


def test_pages_long_lists_without_gaps(alias: str) -> None:
    saver = TwoPerPageSaver(alias)
    thread_id, parent, ids = str(uuid.uuid4()), None, []
    for step in range(5):
        parent = put(saver, thread_id, {"a": step}, {"a": step + 1}, parent=parent, step=step)
        ids.append(parent["configurable"]["checkpoint_id"])

    config = thread(thread_id)
    assert [t.checkpoint["id"] for t in saver.list(config)] == ids[::-1]
    assert [t.metadata["step"] for t in saver.list(config, limit=3)] == [4, 3, 2]
    assert [t.checkpoint["channel_values"]["a"] for t in saver.list(config, before=parent)] == [3, 2, 1, 0]


def test_deleting_a_run_keeps_blobs_later_checkpoints_share(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    thread_id = str(uuid.uuid4())
    first = put(saver, thread_id, {"a": ["kept"]}, {"a": "1"}, run_id="run-1")
    second = put(saver, thread_id, {"a": ["kept"], "b": ["gone"]}, {"b": "1"}, parent=first, run_id="run-2")
    put(
        saver,
        thread_id,
        {"a": ["kept"], "b": ["gone"], "c": ["x"]},
        {"c": "1"},
        parent=second,
        run_id="run-3",
    )

    saver.delete_for_runs(["run-1", "run-2"])
    latest = fetch(saver, thread(thread_id))
    assert latest.checkpoint["channel_values"] == {"a": ["kept"], "b": ["gone"], "c": ["x"]}
    saver.delete_for_runs(["run-3"])
    assert CheckpointBlob.objects.using(alias).filter(thread_id=thread_id).count() == 0


def test_prune_keeps_only_what_the_latest_checkpoint_uses(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    thread_id, parent = str(uuid.uuid4()), None
    for step in range(4):
        new_versions = {"n": step + 1, **({"big": 1} if step == 0 else {})}
        parent = put(
            saver, thread_id, {"big": ["history"], "n": [step]}, new_versions, parent=parent, step=step
        )

    saver.prune([thread_id])
    (latest,) = saver.list(thread(thread_id))
    assert latest.checkpoint["channel_values"] == {"big": ["history"], "n": [3]}
    assert latest.parent_config is None
    assert CheckpointBlob.objects.using(alias).filter(thread_id=thread_id).count() == 2


class ThreadRecordingSaver(DjangoCheckpointSaver):
    def __init__(self, alias: str, threads: set[str]) -> None:
        super().__init__(alias)
        self.threads = threads
        self.transactions = 0

    def _write(self, batch: Any) -> None:
        self.threads.add(threading.current_thread().name)
        self.transactions += 1
        super()._write(batch)


def numbered_puts(saver: DjangoCheckpointSaver, count: int, prefix: str = "t") -> list[Any]:
    return [
        saver.aput(
            {"configurable": {"thread_id": f"{prefix}{i}", "checkpoint_ns": ""}},
            generate_checkpoint(channel_values={"v": i}, channel_versions={"v": 1}),
            generate_metadata(),
            {"v": 1},
        )
        for i in range(count)
    ]


async def test_async_writes_of_different_savers_run_concurrently_on_the_saver_pool(alias: str) -> None:
    threads: set[str] = set()
    savers = [ThreadRecordingSaver(alias, threads) for _ in range(20)]
    configs = await asyncio.gather(*(numbered_puts(saver, 1, f"s{n}-")[0] for n, saver in enumerate(savers)))

    tuples = await asyncio.gather(*(savers[0].aget_tuple(config) for config in configs))
    assert [t.checkpoint["channel_values"]["v"] for t in tuples if t] == [0] * 20
    assert len(threads) > 1 and all(name.startswith("checkpointer") for name in threads)


async def test_concurrent_async_writes_of_one_saver_are_committed_together(alias: str) -> None:
    """What the Pregel loop does with a step's writes and checkpoint: each call answers once
    its write is stored, and writes queued together share a transaction."""
    saver = ThreadRecordingSaver(alias, set())
    configs = await asyncio.gather(*numbered_puts(saver, 20))

    tuples = await asyncio.gather(*(saver.aget_tuple(config) for config in configs))
    assert [t.checkpoint["channel_values"]["v"] for t in tuples if t] == list(range(20))
    assert 1 <= saver.transactions < 20


# ---------------------------------------------------------------- real graphs


class Story(TypedDict):
    history: str
    steps: Annotated[list[int], operator.add]


def append_step(n: int) -> Any:
    return lambda state: {"steps": [n]}


def story_graph(saver: DjangoCheckpointSaver) -> Any:
    """Three nodes that each append a step and never touch the (large) history."""
    builder = StateGraph(Story)
    for n in (1, 2, 3):
        builder.add_node(f"step{n}", append_step(n))
    builder.add_edge(START, "step1")
    builder.add_edge("step1", "step2")
    builder.add_edge("step2", "step3")
    builder.add_edge("step3", END)
    return builder.compile(checkpointer=saver)


async def test_graph_run_stores_an_unchanged_channel_once(alias: str) -> None:
    saver = DjangoCheckpointSaver(alias)
    thread_id = str(uuid.uuid4())
    config = thread(thread_id)

    result = await story_graph(saver).ainvoke({"history": "x" * 50_000, "steps": [0]}, config)

    assert result == {"history": "x" * 50_000, "steps": [0, 1, 2, 3]}
    checkpoints = [t async for t in saver.alist(config)]
    assert len(checkpoints) == 5  # the input, then after the input and each of three steps
    assert await blob_counts(alias, thread_id) == {"history": 1, "steps": 4}


async def blob_counts(alias: str, thread_id: str) -> dict[str, int]:
    """Blob rows per state channel, counted off the event loop (closing that connection)."""

    def count() -> dict[str, int]:
        try:
            blobs = CheckpointBlob.objects.using(alias).filter(thread_id=thread_id)
            return {channel: blobs.filter(channel=channel).count() for channel in ("history", "steps")}
        finally:
            connections[alias].close()

    return await asyncio.to_thread(count)


class Greeting(TypedDict, total=False):
    name: str
    greeting: str


def greeting_graph(saver: DjangoCheckpointSaver) -> Any:
    builder = StateGraph(Greeting)
    builder.add_node("ask", lambda state: {"name": interrupt("What is your name?")})
    builder.add_node("greet", lambda state: {"greeting": f"Hello {state['name']}"})
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "greet")
    builder.add_edge("greet", END)
    return builder.compile(checkpointer=saver)


async def test_graph_interrupts_and_resumes_from_a_fresh_saver(alias: str) -> None:
    config = thread(str(uuid.uuid4()))

    paused = await greeting_graph(DjangoCheckpointSaver(alias)).ainvoke({}, config)
    assert [i.value for i in paused["__interrupt__"]] == ["What is your name?"]

    graph = greeting_graph(DjangoCheckpointSaver(alias))
    state = await graph.aget_state(config)
    assert state.next == ("ask",)
    assert [i.value for task in state.tasks for i in task.interrupts] == ["What is your name?"]
    assert await graph.ainvoke(Command(resume="Ada"), config) == {"name": "Ada", "greeting": "Hello Ada"}
    assert (await graph.aget_state(config)).next == ()
