"""From LangGraph's stream chunks to the wire events of each requested stream mode.

LangGraph is asked for the modes it knows (``messages-tuple`` is its ``messages``); the
legacy ``messages`` mode is rebuilt here from the same token stream (metadata once per
message, then the accumulated message at every token), checkpoint payloads gain the
``checkpoint``/``parent_checkpoint`` objects the reference sends, and subgraph events are
named ``<mode>|<node>:<task id>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk

LANGGRAPH_NATIVE = {"values", "updates", "custom", "tasks", "checkpoints", "debug"}


def langgraph_modes(requested: list[str]) -> list[str]:
    """Modes asked of LangGraph: those behind the requested ones, plus values (the output)
    and updates (they show when the run paused at an interrupt or breakpoint)."""
    modes = {"values", "updates"}
    for mode in requested:
        if mode in LANGGRAPH_NATIVE:
            modes.add(mode)
        elif mode in {"messages", "messages-tuple"}:
            modes.add("messages")
    return sorted(modes)


def event_name(mode: str, namespace: tuple[str, ...]) -> str:
    return "|".join((mode, *namespace)) if namespace else mode


def checkpoint_ref(config: dict | None) -> dict | None:
    if not config:
        return None
    configurable = config.get("configurable") or {}
    return {
        "thread_id": configurable.get("thread_id"),
        "checkpoint_ns": configurable.get("checkpoint_ns", ""),
        "checkpoint_id": configurable.get("checkpoint_id"),
        "checkpoint_map": configurable.get("checkpoint_map"),
    }


def _with_checkpoint_refs(payload: dict) -> dict:
    return {
        **payload,
        "checkpoint": checkpoint_ref(payload.get("config")),
        "parent_checkpoint": checkpoint_ref(payload.get("parent_config")),
    }


class ModeTranslator:
    """Per run: turns ``(namespace, mode, chunk)`` into ``(event name, payload)`` pairs."""

    def __init__(self, requested: list[str], *, subgraphs: bool) -> None:
        self.requested = set(requested)
        self.subgraphs = subgraphs
        self.messages: dict[str, BaseMessageChunk] = {}

    def translate(self, namespace: tuple[str, ...], mode: str, chunk: Any) -> Iterator[tuple[str, Any]]:
        if namespace and not self.subgraphs:
            return
        if mode == "messages":
            yield from self._messages(namespace, chunk)
        elif mode in self.requested:
            if mode == "checkpoints":
                chunk = _with_checkpoint_refs(chunk)
            elif mode == "debug" and chunk.get("type") == "checkpoint":
                chunk = {**chunk, "payload": _with_checkpoint_refs(chunk["payload"])}
            yield event_name(mode, namespace), chunk

    def _messages(self, namespace: tuple[str, ...], chunk: Any) -> Iterator[tuple[str, Any]]:
        message, metadata = chunk
        if "messages-tuple" in self.requested:
            yield event_name("messages", namespace), [message, metadata]
        if "messages" not in self.requested:
            return
        message_id = message.id or ""
        if message_id not in self.messages:
            yield event_name("messages/metadata", namespace), {message_id: {"metadata": metadata}}
        if isinstance(message, BaseMessageChunk):
            previous = self.messages.get(message_id)
            accumulated = message if previous is None else previous + message
            self.messages[message_id] = accumulated
            yield event_name("messages/partial", namespace), [accumulated]
        elif isinstance(message, BaseMessage):
            self.messages.setdefault(message_id, message)  # type: ignore[arg-type]
            yield event_name("messages/complete", namespace), [message]
