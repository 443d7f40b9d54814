"""Chat messages as protocol ``messages`` events (``message-start`` … ``message-finish``).

Runs publish ``messages`` events as ``[message, metadata]`` pairs: chunks of a streaming
model (``AIMessageChunk``, the last one marked ``chunk_position: "last"``) and whole
messages that were not streamed. Chunks are turned into content-block events as they
arrive; the block logic is langchain-core's own compat bridge (the one its v3 event
streams use), so blocks, deltas and finalised tool calls match what the SDK assembles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import _compat_bridge as bridge
from langchain_core.messages import AIMessageChunk, BaseMessage, BaseMessageChunk
from langchain_core.messages.utils import messages_from_dict

ROLES = {"ai": "ai", "human": "human", "system": "system", "tool": "tool"}


def to_message(data: Any) -> BaseMessage | None:
    """A LangChain message from its serialised dict (None for anything else)."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    try:
        return messages_from_dict([{"type": data["type"], "data": data}])[0]
    except (ValueError, TypeError):
        return None


def role_of(message: BaseMessage) -> str:
    return ROLES.get(message.type.removesuffix("MessageChunk").lower(), message.type)


def _start_metadata(message: BaseMessage, metadata: dict) -> dict:
    start = bridge._build_message_start(message, message.id)
    extra = {k: metadata[k] for k in ("langgraph_node", "langgraph_step") if k in metadata}
    if extra:
        start["metadata"] = {**start.get("metadata", {}), **extra}  # type: ignore[typeddict-item]
    start["role"] = role_of(message)  # type: ignore[typeddict-item]
    tool_call_id = getattr(message, "tool_call_id", None)
    if tool_call_id:
        start["tool_call_id"] = tool_call_id  # type: ignore[typeddict-unknown-key]
    return dict(start)


@dataclass
class StreamedMessage:
    """A message whose chunks are still arriving."""

    node: str | None
    blocks: dict[Any, tuple[int, dict]] = field(default_factory=dict)
    usage: dict | None = None
    response_metadata: dict = field(default_factory=dict)

    def feed(self, chunk: BaseMessageChunk) -> list[dict]:
        events: list[dict] = []
        self.response_metadata.update(chunk.response_metadata or {})
        for key, block in bridge._iter_protocol_blocks(chunk):
            if key not in self.blocks:
                index = len(self.blocks)
                self.blocks[key] = (index, dict(block))
                events.append({"event": "content-block-start", "index": index, "content": bridge._start_skeleton(block)})
            else:
                index, state = self.blocks[key]
                self.blocks[key] = (index, bridge._accumulate(state, block))
            delta = bridge._to_content_delta(block)
            if delta is not None:
                events.append({"event": "content-block-delta", "index": index, "delta": delta})
        usage = getattr(chunk, "usage_metadata", None)
        if usage:
            self.usage = dict(bridge._accumulate_usage(self.usage, usage))  # type: ignore[arg-type]
        return events

    def finish(self) -> list[dict]:
        events = [
            {"event": "content-block-finish", "index": index, "content": bridge._finalize_block(block)}
            for index, block in self.blocks.values()
        ]
        finish = bridge._build_message_finish(usage=self.usage, response_metadata=self.response_metadata)  # type: ignore[arg-type]
        return [*events, dict(finish)]


class MessageStreams:
    """Per run: the open streamed messages by (namespace, message id), and the ones done."""

    def __init__(self) -> None:
        self.open: dict[tuple[tuple[str, ...], str], StreamedMessage] = {}
        self.done: set[tuple[tuple[str, ...], str]] = set()

    def feed(self, namespace: tuple[str, ...], data: Any) -> list[dict]:
        """Events for one ``[message, metadata]`` pair."""
        if not isinstance(data, list) or len(data) != 2:
            return []
        message = to_message(data[0])
        metadata = data[1] if isinstance(data[1], dict) else {}
        if message is None:
            return []
        key = (namespace, message.id or "")
        if isinstance(message, BaseMessageChunk):
            return self._chunk(key, message, metadata, last=data[0].get("chunk_position") == "last")
        if key in self.open:  # the whole message after its chunks
            return self.close(key)
        if key in self.done:
            return []
        self.done.add(key)
        return self._whole(message, metadata)

    def _chunk(self, key: tuple, chunk: BaseMessageChunk, metadata: dict, *, last: bool) -> list[dict]:
        events = []
        stream = self.open.get(key)
        if stream is None:
            stream = self.open[key] = StreamedMessage(node=metadata.get("langgraph_node"))
            events.append(_start_metadata(chunk, metadata))
        if isinstance(chunk, AIMessageChunk):
            events.extend(stream.feed(chunk))
        if last:
            events.extend(self.close(key))
        return events

    def _whole(self, message: BaseMessage, metadata: dict) -> list[dict]:
        events = [dict(e) for e in bridge.message_to_events(message)]
        events[0] = _start_metadata(message, metadata)
        return events

    def close(self, key: tuple) -> list[dict]:
        stream = self.open.pop(key, None)
        if stream is None:
            return []
        self.done.add(key)
        return stream.finish()

    def close_node(self, namespace: tuple[str, ...], node: str) -> list[tuple[tuple[str, ...], list[dict]]]:
        """Finish messages of ``node`` in ``namespace`` whose last chunk was never marked."""
        keys = [k for k, s in self.open.items() if k[0] == namespace and s.node == node]
        return [(key[0], self.close(key)) for key in keys]

    def close_all(self) -> list[tuple[tuple[str, ...], list[dict]]]:
        return [(key[0], self.close(key)) for key in list(self.open)]
