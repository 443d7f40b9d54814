"""The v2 event-streaming protocol (api-reference §2.10) through the unmodified SDK 0.4.

``client.threads.stream(...)`` over SSE and over the Channels websocket, on both
deployments; raw HTTP and websocket clients for what the SDK does not expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.stream.transport import ProtocolSseTransport, ProtocolWebSocketTransport
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.live import ROOT, LiveServer, free_port

TIMEOUT = 30
ALL_CHANNELS = ["values", "updates", "messages", "tools", "custom", "lifecycle", "input", "tasks", "checkpoints"]


@pytest.fixture(params=["sse", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


def root_terminal(event: dict) -> bool:
    params = event.get("params") or {}
    return (
        event.get("method") == "lifecycle"
        and params.get("namespace") == []
        and params["data"]["event"] in ("completed", "failed")
    )


async def start_run(http: httpx.AsyncClient, tid: str, assistant_id: str, input: dict) -> dict:
    response = await http.post(
        f"/threads/{tid}/commands",
        json={"id": 1, "method": "run.start", "params": {"assistant_id": assistant_id, "input": input}},
    )
    assert response.status_code == 200, response.text
    return response.json()


async def sse_events(http: httpx.AsyncClient, tid: str, body: dict, *, until=root_terminal) -> list[dict]:
    """Protocol events of ``POST /stream/events`` up to the first one ``until`` accepts."""
    events: list[dict] = []
    async with asyncio.timeout(TIMEOUT), http.stream("POST", f"/threads/{tid}/stream/events", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(orjson.loads(line[6:]))
                if until(events[-1]):
                    break
    return events


# ------------------------------------------------------------------ the SDK session API


async def test_values_and_messages_of_a_chat_run(client, transport: str) -> None:
    async with client.threads.stream(assistant_id="agent", transport=transport) as thread:
        result = await thread.run.start(input={"messages": [{"role": "user", "content": "hi there"}]})
        assert uuid.UUID(result["run_id"])
        async with asyncio.timeout(TIMEOUT):
            streams = [message async for message in thread.messages]
        assert len(streams) == 1 and streams[0].node == "respond"
        assert await streams[0].text == "You said: hi there"
        output = await asyncio.wait_for(thread.output, TIMEOUT)
    assert [m["content"] for m in output["messages"]] == ["hi there", "You said: hi there"]

    async with client.threads.stream(assistant_id="chain10", transport=transport) as thread:
        await thread.run.start(input={"items": ["v"]})
        async with asyncio.timeout(TIMEOUT):
            snapshots = [values async for values in thread.values]
    assert snapshots[-1] == {"items": ["v"] + [f"n{i}" for i in range(10)]}
    # The first snapshot comes from the state API, then one per super-step.
    assert snapshots[-11:] == [{"items": ["v"] + [f"n{j}" for j in range(i)]} for i in range(11)]


def test_sync_client_session(sync_client, transport: str) -> None:
    # Not "approval": with a run that pauses within milliseconds, the sync SDK's values
    # projection can miss the pause or end before the run's values (see paused_approval).
    with sync_client.threads.stream(assistant_id="paused_approval", transport=transport) as thread:
        thread.run.start(input={"request": "ship"})
        snapshots = list(thread.values)  # ends when the run pauses on interrupt()
        assert snapshots[-1] == {"request": "ship"}
        assert [i["value"] for i in thread.interrupts] == [{"question": "Approve ship?"}]
        thread.run.respond("no")
        assert thread.output == {"request": "ship", "approved": False, "result": "ship: rejected"}


async def test_interrupt_answered_with_input_respond(client, transport: str) -> None:
    async with client.threads.stream(assistant_id="approval", transport=transport) as thread:
        await thread.run.start(input={"request": "deploy"})
        async with asyncio.timeout(TIMEOUT):
            async for _ in thread.values:  # ends when the run pauses on interrupt()
                pass
        assert thread.interrupted
        [pending] = thread.interrupts
        assert pending["value"] == {"question": "Approve deploy?"}
        assert pending["namespace"] == []
        await thread.run.respond("yes")
        output = await asyncio.wait_for(thread.output, TIMEOUT)
        assert output == {"request": "deploy", "approved": True, "result": "deploy: done"}
        assert not thread.interrupted

    tid = str(uuid.uuid4())
    async with client.threads.stream(tid, assistant_id="interrupt_once", transport=transport) as thread:
        await thread.run.start(input={"items": ["why?"]})
        async with asyncio.timeout(TIMEOUT):
            async for _ in thread.subscribe(["values"]):  # ends when the run pauses
                pass
        [pending] = thread.interrupts
        assert pending["value"] == {"question": "why?"}
        await thread.run.respond("because", interrupt_id=pending["interrupt_id"])
        assert await asyncio.wait_for(thread.output, TIMEOUT) == {"items": ["why?", "answer:because"]}
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_subgraph_namespaces(client, transport: str) -> None:
    async with client.threads.stream(assistant_id="nested", transport=transport) as thread:
        await thread.run.start(input={"items": []})
        async with asyncio.timeout(TIMEOUT):
            events = [e async for e in thread.subscribe(ALL_CHANNELS)]
        children = []
        async with client.threads.stream(thread.thread_id, assistant_id="nested", transport=transport) as again:
            # A later session on the same thread discovers the subgraph from the replay.
            async with asyncio.timeout(TIMEOUT):
                async for child in again.subgraphs:
                    children.append(child)
                    break
        tree = (await thread._send_command("agent.getTree", {}))["tree"]
    [worker_ns] = {tuple(e["params"]["namespace"]) for e in events if e["params"]["namespace"]}
    assert worker_ns[0].startswith("worker:")
    lifecycle = [(e["params"]["namespace"], e["params"]["data"]["event"]) for e in events if e["method"] == "lifecycle"]
    assert lifecycle == [([], "running"), (list(worker_ns), "started"), (list(worker_ns), "completed"), ([], "completed")]
    custom = [e for e in events if e["method"] == "custom"]
    assert [(c["params"]["namespace"], c["params"]["data"]) for c in custom] == [
        (list(worker_ns), {"payload": {"progress": "researching"}})
    ]
    inner = [e["params"]["data"]["node"] for e in events if e["method"] == "updates" and e["params"]["namespace"]]
    assert inner == ["research", "summarise"]
    outer = [e["params"]["node"] for e in events if e["method"] == "updates" and not e["params"]["namespace"]]
    assert outer == ["plan", "worker", "finish"]
    assert [c.graph_name for c in children] == ["worker"] and children[0].path == worker_ns
    assert tree["graph_name"] == "nested" and tree["status"] == "completed"
    assert [(c["graph_name"], c["status"]) for c in tree["children"]] == [("worker", "completed")]


async def test_namespace_and_depth_filters(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        tid = str(uuid.uuid4())
        await start_run(http, tid, "nested", {"items": []})
        everything = await sse_events(http, tid, {"channels": ["updates", "lifecycle"]})
        worker = await sse_events(
            http, tid, {"channels": ["updates"], "namespaces": [["worker"]]},
            until=lambda e: e["params"]["data"]["node"] == "summarise",
        )
        root_only = await sse_events(
            http, tid, {"channels": ["updates", "lifecycle"], "namespaces": [[]], "depth": 0}
        )
    assert [e["params"]["data"]["node"] for e in worker] == ["research", "summarise"]
    assert all(e["params"]["namespace"] == [] for e in root_only)
    assert [e for e in everything if not e["params"]["namespace"]] == root_only


# -------------------------------------------------------------------------------- tools

TOOLS_GRAPH = '''
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def model(state: MessagesState) -> dict:
    last = state["messages"][-1]
    if last.type == "human":
        call = {"id": "call_add_1", "name": "add", "args": {"a": 2, "b": 3}}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}
    return {"messages": [AIMessage(content=f"The answer is {last.content}")]}


builder = StateGraph(MessagesState)
builder.add_node("model", model)
builder.add_node("tools", ToolNode([add]))
builder.add_edge(START, "model")
builder.add_conditional_edges("model", tools_condition)
builder.add_edge("tools", "model")
graph = builder.compile()
'''


@pytest.fixture(scope="module", params=["prod", "dev"])
def tools_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A deployment serving a graph that calls a tool (written here: the shared graphs have none)."""
    folder = tmp_path_factory.mktemp("tools-graph")
    (folder / "tools_graph.py").write_text(TOOLS_GRAPH)
    config = folder / "langgraph.json"
    config.write_text(json.dumps({"dependencies": ["."], "graphs": {"tools_agent": "./tools_graph.py:graph"}}))
    live = LiveServer(mode=request.param, config=config).start()
    yield live
    live.stop()


async def test_tool_calls(tools_server: LiveServer, transport: str) -> None:
    async with get_client(url=tools_server.url, api_key=None) as client:
        async with client.threads.stream(assistant_id="tools_agent", transport=transport) as thread:
            await thread.run.start(input={"messages": [{"role": "user", "content": "2 + 3?"}]})
            async with asyncio.timeout(TIMEOUT):
                calls = [call async for call in thread.tool_calls]
            output = await asyncio.wait_for(thread.output, TIMEOUT)
            assert len(calls) == 1
            assert (calls[0].name, calls[0].tool_call_id, calls[0].input) == ("add", "call_add_1", {"a": 2, "b": 3})
            result = await calls[0].output
            assert result["type"] == "tool" and result["content"] == "5" and result["tool_call_id"] == "call_add_1"
    assert output["messages"][-1]["content"] == "The answer is 5"


# ------------------------------------------------------------------ since, seq, reconnect


async def test_since_replays_exactly_what_followed(client, transport: str) -> None:
    tid = str(uuid.uuid4())
    await client.http.post(
        f"/threads/{tid}/commands",
        json={"id": 7, "method": "run.start", "params": {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hello you"}]}}},
    )
    cls = ProtocolWebSocketTransport if transport == "websocket" else ProtocolSseTransport
    channel = cls(client=client.http.client, thread_id=tid)

    async def read(params: dict) -> list[dict]:
        handle = channel.open_event_stream(params)
        events = []
        async with asyncio.timeout(TIMEOUT):
            async for event in handle.events:
                if event.get("type") == "event":
                    events.append(event)
                    if root_terminal(event):
                        break
        await handle.close()
        return events

    everything = await read({"channels": ALL_CHANNELS})
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert len({e["event_id"] for e in everything}) == len(everything)
    deltas = [e for e in everything if e["method"] == "messages" and e["params"]["data"]["event"] == "content-block-delta"]
    assert len(deltas) > 2  # token by token
    assert "".join(d["params"]["data"]["delta"]["text"] for d in deltas) == "You said: hello you"
    checkpoints = [e["params"]["data"] for e in everything if e["method"] == "checkpoints"]
    assert [(c["step"], c["source"]) for c in checkpoints] == [(-1, "input"), (0, "loop"), (1, "loop")]
    assert [c.get("parent_id") for c in checkpoints] == [None, checkpoints[0]["id"], checkpoints[1]["id"]]
    for since in (0, 3, len(everything) // 2, len(everything) - 1):
        assert await read({"channels": ALL_CHANNELS, "since": since}) == everything[since:]
    messages_after = await read({"channels": ["messages", "lifecycle"], "since": 5})
    assert messages_after == [e for e in everything[5:] if e["method"] in ("messages", "lifecycle")]
    await channel.close()


class CuttingProxy:
    """A TCP proxy in front of the server that can cut every open connection at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open: list[asyncio.StreamWriter] = []
        self.cuts = 0

    async def __aenter__(self) -> CuttingProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        self._abort()
        await asyncio.sleep(0.05)  # let the pipes see their ends

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.open += [writer, up_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        self.cuts += 1
        self._abort()

    def _abort(self) -> None:
        for writer in self.open:
            writer.transport.abort()
        self.open = []


async def test_sdk_resumes_after_the_connection_is_cut(server: LiveServer, transport: str) -> None:
    async with CuttingProxy(server.port) as proxy, get_client(url=proxy.url, api_key=None) as client:
        async with client.threads.stream(assistant_id="slow", transport=transport) as thread:
            await thread.run.start(input={"items": ["sleep:0.4"]})
            payloads = []
            async with asyncio.timeout(TIMEOUT):
                async for event in thread.subscribe(["custom"]):
                    payloads.append(event["params"]["data"]["payload"])
                    if len(payloads) == 1:
                        proxy.cut()
            output = await asyncio.wait_for(thread.output, TIMEOUT)
    assert proxy.cuts == 1
    assert payloads == [{"node": f"s{i}"} for i in range(5)]  # each once, in order
    assert output["items"] == ["sleep:0.4"] + [f"s{i}" for i in range(5)]


# ----------------------------------------------------------------------------- commands


async def test_commands_replies_and_errors(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        tid = str(uuid.uuid4())

        async def command(method: str, params: dict, command_id: int = 3) -> dict:
            response = await http.post(f"/threads/{tid}/commands", json={"id": command_id, "method": method, "params": params})
            assert response.status_code == 200, response.text
            return response.json()

        first = await command("run.start", {"assistant_id": "echo", "input": {"items": ["a"]}})
        assert first["type"] == "success" and first["id"] == 3
        assert first["meta"] == {"applied_through_seq": 0}
        events = await sse_events(http, tid, {"channels": ["lifecycle"]})
        second = await command("run.start", {"assistant_id": "echo", "input": {"items": ["b"]}}, 4)
        # Everything the second run does comes after the cursor the reply gives.
        assert second["meta"]["applied_through_seq"] >= events[-1]["seq"]
        after = await sse_events(http, tid, {"channels": ["lifecycle"], "since": second["meta"]["applied_through_seq"]})
        assert [e["params"]["data"]["event"] for e in after] == ["running", "completed"]

        assert (await command("nope.nope", {}))["error"] == "unknown_command"
        assert (await command("run.start", {}))["error"] == "invalid_argument"
        assert (await command("run.start", {"assistant_id": "no-such-graph"}))["error"] == "invalid_argument"
        bad = await command("input.respond", {"interrupt_id": "missing", "response": 1, "namespace": []})
        assert bad == {"type": "error", "id": 3, "error": "no_such_interrupt", "message": bad["message"]}
        assert (await command("input.respond", {"response": 1}))["error"] == "invalid_argument"
        assert (await command("subscription.subscribe", {"channels": ["values"]}))["error"] == "not_supported"
        tree = await command("agent.getTree", {})
        assert tree["result"]["tree"]["status"] == "completed" and tree["result"]["tree"]["graph_name"] == "echo"

        malformed = await http.post(f"/threads/{tid}/commands", json={"method": "run.start"})
        assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_argument"
        assert (await http.post("/threads/not-a-uuid/commands", json={"id": 1, "method": "agent.getTree"})).status_code == 422
        missing = await http.post(f"/threads/{uuid.uuid4()}/commands", json={"id": 1, "method": "agent.getTree"})
        assert missing.json()["error"] == "no_such_run"


async def test_respond_with_the_responses_form(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        tid = str(uuid.uuid4())
        await start_run(http, tid, "interrupt_once", {"items": ["ok?"]})
        events = await sse_events(http, tid, {"channels": ["input"]}, until=lambda e: True)
        interrupt_id = events[0]["params"]["data"]["interrupt_id"]
        reply = await http.post(
            f"/threads/{tid}/commands",
            json={"id": 9, "method": "input.respond",
                  "params": {"responses": [{"interrupt_id": interrupt_id, "response": "fine", "namespace": []}]}},
        )
        assert reply.json()["type"] == "success", reply.text
        values = await sse_events(
            http, tid, {"channels": ["values"]}, until=lambda e: e["params"]["data"]["items"][-1] == "answer:fine"
        )
        assert values[-1]["params"]["data"] == {"items": ["ok?", "answer:fine"]}


async def test_event_stream_request_validation(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        for body in ({}, {"channels": []}, {"channels": ["debug"]}, {"channels": ["values"], "since": -1},
                     {"channels": ["values"], "depth": "x"}, {"channels": ["values"], "namespaces": "a"}):
            response = await http.post(f"/threads/{tid}/stream/events", json=body)
            assert response.status_code == 400, body
        missing = await http.post(f"/threads/{uuid.uuid4()}/stream/events", json={"channels": ["values"]})
        assert missing.status_code == 404
        async with http.stream("POST", f"/threads/{tid}/stream/events", json={"channels": ["custom:progress"]}) as ok:
            assert ok.status_code == 200
            assert ok.headers["content-type"].startswith("text/event-stream")


# ---------------------------------------------------------------------------- websocket


def ws_url(server: LiveServer, tid: str) -> str:
    return server.url.replace("http://", "ws://") + f"/threads/{tid}/stream/events"


async def next_frame(socket) -> dict:
    return orjson.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))


async def frames_until(socket, *conditions) -> list[dict]:
    """Frames up to the one after which each condition has held for some frame."""
    frames: list[dict] = []
    pending = list(conditions)
    while pending:
        frames.append(await next_frame(socket))
        pending = [c for c in pending if not c(frames[-1])]
    return frames


def reply_to(command_id: int):
    return lambda frame: frame.get("type") != "event" and frame.get("id") == command_id


def events_of(frames: list[dict]) -> list[dict]:
    return [f for f in frames if f.get("type") == "event"]


async def test_websocket_commands_and_subscriptions(server: LiveServer) -> None:
    tid = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as http:
        await start_run(http, tid, "chain10", {"items": []})
        everything = await sse_events(http, tid, {"channels": ALL_CHANNELS})
    async with ws_connect(ws_url(server, tid)) as socket:
        await socket.send(json.dumps({"id": 1, "method": "subscription.subscribe",
                                      "params": {"channels": ["lifecycle"], "since": 2}}))
        frames = await frames_until(socket, reply_to(1), root_terminal)
        # Replay from the thread stream (buffered or still being read), in order, after seq 2.
        assert events_of(frames) == [e for e in everything if e["method"] == "lifecycle" and e["seq"] > 2]
        [reply] = [f for f in frames if reply_to(1)(f)]
        assert reply["type"] == "success" and reply["result"]["replayed_events"] <= 2
        subscription_id = reply["result"]["subscription_id"]
        # Commands on the socket: a second run's events arrive live on the subscription.
        await socket.send(json.dumps({"id": 2, "method": "run.start",
                                      "params": {"assistant_id": "chain10", "input": {"items": []}}}))
        frames = await frames_until(socket, reply_to(2), root_terminal)
        [started] = [f for f in frames if reply_to(2)(f)]
        assert started["result"]["run_id"] and started["meta"]["applied_through_seq"] >= everything[-1]["seq"]
        assert [e["params"]["data"]["event"] for e in events_of(frames)] == ["running", "completed"]
        assert events_of(frames)[0]["seq"] > started["meta"]["applied_through_seq"]
        await socket.send(json.dumps({"id": 3, "method": "subscription.unsubscribe",
                                      "params": {"subscription_id": subscription_id}}))
        assert (await next_frame(socket))["type"] == "success"
        await socket.send(json.dumps({"id": 4, "method": "subscription.unsubscribe",
                                      "params": {"subscription_id": subscription_id}}))
        assert (await next_frame(socket))["error"] == "no_such_subscription"
        await socket.send(json.dumps({"id": 5, "method": "subscription.reconnect",
                                      "params": {"channels": ["values"], "since": everything[-2]["seq"]}}))
        frames = await frames_until(socket, reply_to(5))
        assert frames[-1]["result"]["restored"] is True
        await socket.send("not json")
        assert (await next_frame(socket))["error"] == "invalid_argument"


async def test_websocket_refuses_foreign_origins_and_missing_threads(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(ws_url(server, tid), origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with ws_connect(ws_url(server, tid), origin=f"http://127.0.0.1:{server.port}") as socket:
        await socket.send(json.dumps({"id": 1, "method": "subscription.subscribe", "params": {"channels": ["values"]}}))
        assert orjson.loads(await socket.recv())["type"] == "success"
    async with ws_connect(ws_url(server, str(uuid.uuid4()))) as socket:
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd.code == 4404


# ------------------------------------------------------------------ across web processes


async def test_run_started_on_one_web_process_streams_from_another(prod_server: LiveServer) -> None:
    port = free_port()
    log = open(prod_server.tmp / "web-second.log", "ab")
    second = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "agentserver.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--lifespan", "off", "--log-level", "warning"],
        cwd=Path(ROOT), env=prod_server.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        other = f"http://127.0.0.1:{port}"
        async with asyncio.timeout(60):
            while True:
                try:
                    if httpx.get(f"{other}/ok").status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
        async with get_client(url=prod_server.url, api_key=None) as one, get_client(url=other, api_key=None) as two:
            tid = str(uuid.uuid4())
            await one.http.post(f"/threads/{tid}/commands", json={
                "id": 1, "method": "run.start", "params": {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "across"}]}}})
            async with two.threads.stream(tid, assistant_id="agent", transport="websocket") as thread:
                async with asyncio.timeout(TIMEOUT):
                    streams = [m async for m in thread.messages]
                assert await streams[0].text == "You said: across"
    finally:
        LiveServer.kill(second)
        log.close()
