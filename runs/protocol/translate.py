"""From a thread's event stream to protocol events, deterministically.

The thread stream holds every run's classic stream-mode events (``values``, ``updates``,
``messages`` tuples, ``custom``, ``tasks``, ``checkpoints``; ``<mode>|<ns>`` for
subgraphs), each run's ``metadata`` first and its end marker last. Translating it from
its first entry always gives the same protocol events in the same order, so:

* ``seq`` is the position of an event in that translation (1, 2, …, across runs), and a
  client's ``since`` cursor replays exactly what came after it, on any web process;
* ``event_id`` is the stream entry id (``<entry id>.<n>`` for the n-th further event
  made from one entry), stable across reconnects for the client's de-duplication.

Lifecycle is derived: root ``running`` at a run's start; ``started`` for each subgraph
namespace at its first event and ``completed`` when its parent reports the node's update
(or at the run's end); the root's ``completed`` / ``failed`` / ``interrupted`` at the end.
Interrupts (``__interrupt__`` in values or updates) become ``input.requested`` events
followed by the root's ``interrupted``. Tool calls are read from the messages that nodes
return: an AI message's ``tool_calls`` start them, the matching tool message ends them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from agentserver.events import Event
from runs.protocol.messages import MessageStreams

Namespace = tuple[str, ...]


def split_event_name(name: str) -> tuple[str, Namespace]:
    method, *namespace = name.split("|")
    return method, tuple(namespace)


def _timestamp(entry_id: str) -> int:
    ms = entry_id.partition("-")[0]
    return int(ms) if ms.isdigit() else 0


def _segment_name(segment: str) -> str:
    return segment.partition(":")[0]


@dataclass
class RunView:
    """What the translation remembers about one run of the thread."""

    run_id: str
    graph_name: str
    started: bool = False
    terminal: bool = False
    interrupted: bool = False
    namespaces: dict[Namespace, str] = field(default_factory=dict)  # namespace -> status, in order
    interrupts: dict[str, Namespace] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)  # tool call id -> "started" | "done"
    messages: MessageStreams = field(default_factory=MessageStreams)

    def tree(self, namespace: Namespace = ()) -> dict:
        """``agent.getTree``: this run's namespaces as a tree."""
        if namespace:
            status, name = self.namespaces.get(namespace, "started"), _segment_name(namespace[-1])
        else:
            status = "running" if not self.terminal else ("interrupted" if self.interrupted else "completed")
            status, name = self.namespaces.get((), status), self.graph_name
        node: dict[str, Any] = {"namespace": list(namespace), "status": status, "graph_name": name}
        children = [ns for ns in self.namespaces if len(ns) == len(namespace) + 1 and ns[:-1] == namespace]
        if children:
            node["children"] = [self.tree(child) for child in children]
        return node


class ThreadTranslator:
    """Feeds on thread-stream entries in order; returns the protocol events of each."""

    def __init__(self) -> None:
        self.seq = 0
        self.runs: dict[str, RunView] = {}
        self.latest_run: RunView | None = None
        self._out: list[dict] = []
        self._entry_id = ""
        self._made = 0

    def knows(self, run_id: str) -> bool:
        return run_id in self.runs

    def feed(self, entry: Event, graph_name: str | None = None) -> list[dict]:
        """The protocol events of one entry; ``graph_name`` names the graph of a new run."""
        if entry.run_id is None:  # thread events (state_update) are not part of the protocol
            return []
        self._out, self._entry_id, self._made = [], entry.id, 0
        run = self.runs.get(entry.run_id)
        if run is None:
            run = self.runs[entry.run_id] = RunView(entry.run_id, graph_name or "root")
            self._forget_finished_runs()
        self.latest_run = run
        if entry.is_end:
            self._end(run, orjson.loads(entry.data))
        elif not run.terminal:
            self._dispatch(run, entry.event, orjson.loads(entry.data))
        return self._out

    def _forget_finished_runs(self, keep: int = 8) -> None:
        finished = [rid for rid, run in self.runs.items() if run.terminal]
        for run_id in finished[:-keep]:
            del self.runs[run_id]

    # ------------------------------------------------------------------ emission

    def emit(self, method: str, namespace: Namespace, data: Any, node: str | None = None) -> None:
        self.seq += 1
        event_id = self._entry_id if not self._made else f"{self._entry_id}.{self._made}"
        self._made += 1
        params: dict[str, Any] = {"namespace": list(namespace), "timestamp": _timestamp(self._entry_id), "data": data}
        if node:
            params["node"] = node
        self._out.append({"type": "event", "event_id": event_id, "seq": self.seq, "method": method, "params": params})

    def _lifecycle(self, run: RunView, namespace: Namespace, status: str, error: str | None = None) -> None:
        if run.namespaces.get(namespace) == status and error is None:
            return
        run.namespaces[namespace] = status
        name = _segment_name(namespace[-1]) if namespace else run.graph_name
        data = {"event": status, "graph_name": name, **({"error": error} if error else {})}
        self.emit("lifecycle", namespace, data)

    # ------------------------------------------------------------------ dispatch

    def _dispatch(self, run: RunView, name: str, data: Any) -> None:
        if name == "metadata":
            self._start(run)
            return
        self._start(run)
        if name == "error":
            message = data.get("message") if isinstance(data, dict) else str(data)
            self._close_all(run)
            self._lifecycle(run, (), "failed", error=message or "Run failed")
            run.terminal = True
            return
        method, namespace = split_event_name(name)
        handler = getattr(self, f"_on_{method}", None)
        if handler is None:  # debug, events, legacy messages/*: nothing to translate
            return
        self._open_namespaces(run, namespace)
        handler(run, namespace, data)

    def _start(self, run: RunView) -> None:
        if not run.started:
            run.started = True
            self._lifecycle(run, (), "running")

    def _open_namespaces(self, run: RunView, namespace: Namespace) -> None:
        for depth in range(1, len(namespace) + 1):
            prefix = namespace[:depth]
            if prefix not in run.namespaces:
                self._lifecycle(run, prefix, "started")

    def _on_values(self, run: RunView, namespace: Namespace, data: Any) -> None:
        interrupts = data.get("__interrupt__") if isinstance(data, dict) else None
        values = {k: v for k, v in data.items() if k != "__interrupt__"} if isinstance(data, dict) else data
        if values != {}:
            self.emit("values", namespace, values)
        self._interrupts(run, namespace, interrupts)

    def _on_updates(self, run: RunView, namespace: Namespace, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for node, update in data.items():
            if node == "__interrupt__":
                self._interrupts(run, namespace, update)
                continue
            for message_ns, events in run.messages.close_node(namespace, node):
                for event in events:
                    self.emit("messages", message_ns, event)
            values = update if isinstance(update, dict) else {"value": update}
            values = {k: v for k, v in values.items() if k != "__interrupt__"}
            self.emit("updates", namespace, {"node": node, "values": values}, node=node)
            self._tools(run, namespace, values)
            self._close_child(run, namespace, node)

    def _on_messages(self, run: RunView, namespace: Namespace, data: Any) -> None:
        for event in run.messages.feed(namespace, data):
            self.emit("messages", namespace, event)

    def _on_custom(self, run: RunView, namespace: Namespace, data: Any) -> None:
        self.emit("custom", namespace, {"payload": data})

    def _on_tasks(self, run: RunView, namespace: Namespace, data: Any) -> None:
        node = data.get("name") if isinstance(data, dict) else None
        self.emit("tasks", namespace, data, node=node if isinstance(node, str) else None)

    def _on_checkpoints(self, run: RunView, namespace: Namespace, data: Any) -> None:
        if not isinstance(data, dict):
            return
        configurable = (data.get("config") or {}).get("configurable") or {}
        parent = (data.get("parent_config") or {}).get("configurable") or {}
        metadata = data.get("metadata") or {}
        if not configurable.get("checkpoint_id"):
            return
        checkpoint = {"id": configurable["checkpoint_id"], "step": metadata.get("step", 0), "source": metadata.get("source", "loop")}
        if parent.get("checkpoint_id"):
            checkpoint["parent_id"] = parent["checkpoint_id"]
        self.emit("checkpoints", namespace, checkpoint)

    # ------------------------------------------------------------ derived events

    def _interrupts(self, run: RunView, namespace: Namespace, interrupts: Any) -> None:
        fresh = False
        for item in interrupts if isinstance(interrupts, list) else []:
            interrupt_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(interrupt_id, str) or interrupt_id in run.interrupts:
                continue
            run.interrupts[interrupt_id] = namespace
            value = item.get("value")
            self.emit("input.requested", namespace, {"interrupt_id": interrupt_id, "payload": value, "value": value})
            fresh = True
        if fresh and not run.interrupted:
            run.interrupted = True
            self._lifecycle(run, (), "interrupted")

    def _tools(self, run: RunView, namespace: Namespace, values: dict) -> None:
        messages = values.get("messages")
        for message in messages if isinstance(messages, list) else [messages]:
            if not isinstance(message, dict):
                continue
            if message.get("type") in ("ai", "AIMessageChunk"):
                for call in message.get("tool_calls") or []:
                    self._tool_started(run, namespace, call.get("id"), call.get("name"), call.get("args"))
            elif message.get("type") == "tool":
                self._tool_finished(run, namespace, message)

    def _tool_started(self, run: RunView, namespace: Namespace, call_id: Any, name: Any, args: Any) -> None:
        if not isinstance(call_id, str) or call_id in run.tools:
            return
        run.tools[call_id] = "started"
        data = {"event": "tool-started", "tool_call_id": call_id, "tool_name": name or "", "input": args}
        self.emit("tools", namespace, data)

    def _tool_finished(self, run: RunView, namespace: Namespace, message: dict) -> None:
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str) or run.tools.get(call_id) == "done":
            return
        self._tool_started(run, namespace, call_id, message.get("name"), None)
        run.tools[call_id] = "done"
        if message.get("status") == "error":
            content = message.get("content")
            text = content if isinstance(content, str) else orjson.dumps(content).decode()
            self.emit("tools", namespace, {"event": "tool-error", "tool_call_id": call_id, "message": text})
        else:
            self.emit("tools", namespace, {"event": "tool-finished", "tool_call_id": call_id, "output": message})

    def _close_child(self, run: RunView, namespace: Namespace, node: str) -> None:
        """The parent reported ``node``'s update: its oldest open invocation is done."""
        for child, status in run.namespaces.items():
            if (
                status == "started" and len(child) == len(namespace) + 1 and child[:-1] == namespace
                and _segment_name(child[-1]) == node
            ):
                self._close_subtree(run, child)
                return

    def _close_subtree(self, run: RunView, top: Namespace) -> None:
        open_ = [ns for ns, s in run.namespaces.items() if s == "started" and ns[: len(top)] == top and ns]
        for namespace in sorted(open_, key=len, reverse=True):
            self._lifecycle(run, namespace, "completed")

    def _close_all(self, run: RunView) -> None:
        for message_ns, events in run.messages.close_all():
            for event in events:
                self.emit("messages", message_ns, event)
        self._close_subtree(run, ())

    def _end(self, run: RunView, data: dict) -> None:
        """The run's end marker: its final status is committed."""
        if run.terminal or not run.started:
            run.terminal = True
            return
        self._close_all(run)
        status, output = data.get("status"), data.get("output")
        if status == "success":
            if isinstance(output, dict):
                self._interrupts(run, (), output.get("__interrupt__"))
            if not run.interrupted:
                self._lifecycle(run, (), "completed")
        elif status in ("error", "timeout"):
            error = output.get("__error__") if isinstance(output, dict) else None
            message = error.get("message") if isinstance(error, dict) else None
            self._lifecycle(run, (), "failed", error=message or f"Run ended with status {status}")
        else:  # cancelled (interrupt or rollback): not an end for a client waiting on the thread
            self._lifecycle(run, (), "interrupted")
        run.terminal = True
