"""The graph registry: the graphs named in the config, imported once per process.

A graph entry may point at a compiled graph, an uncompiled ``StateGraph``, or a factory
(sync or async, taking nothing or a ``RunnableConfig``, possibly an async context
manager). ``LoadedGraph.build`` turns any of them into a compiled graph bound to our
checkpointer and store.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from agentserver.config import ServerConfig, get_config

# The namespace the official server derives default assistant ids from.
ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def default_assistant_id(graph_id: str) -> uuid.UUID:
    return uuid.uuid5(ASSISTANT_NAMESPACE, graph_id)


class GraphLoadError(Exception):
    """A graph could not be imported; the message names the graph, file and exception."""


@dataclass
class LoadedGraph:
    graph_id: str
    description: str | None
    source: str
    target: Any

    @property
    def is_factory(self) -> bool:
        return not isinstance(self.target, (Pregel, StateGraph))

    @contextlib.asynccontextmanager
    async def build(
        self, config: dict | None = None, *, checkpointer: Any = None, store: Any = None
    ) -> AsyncIterator[Pregel]:
        """Yield the compiled graph for ``config``, bound to ``checkpointer`` and ``store``."""
        config = config or {"configurable": {}}
        async with _materialise(self.target, config) as graph:
            if isinstance(graph, StateGraph):
                graph = graph.compile()
            if not isinstance(graph, Pregel):
                raise TypeError(
                    f"Graph {self.graph_id!r} factory returned {type(graph).__name__}, not a graph"
                )
            update: dict[str, Any] = {"checkpointer": checkpointer}
            if store is not None:
                update["store"] = store
            yield graph.copy(update=update)


@contextlib.asynccontextmanager
async def _materialise(target: Any, config: dict) -> AsyncIterator[Any]:
    if isinstance(target, (Pregel, StateGraph)):
        yield target
        return
    params = [
        p
        for p in inspect.signature(target).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    result = target(config) if params else target()
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__aenter__"):
        async with result as graph:
            yield graph
    elif hasattr(result, "__enter__"):
        with result as graph:
            yield graph
    else:
        yield result


def _import_target(config: ServerConfig, graph_id: str, spec: str) -> tuple[str, Any]:
    module_ref, sep, attr = spec.rpartition(":")
    if not sep or not module_ref or not attr:
        raise GraphLoadError(
            f"Graph {graph_id!r}: {spec!r} must look like './file.py:attr' or 'package.module:attr'"
        )
    is_file = module_ref.endswith(".py") or "/" in module_ref
    source = str((config.base_dir / module_ref).resolve()) if is_file else module_ref
    try:
        module = _import_file(Path(source)) if is_file else importlib.import_module(module_ref)
    except FileNotFoundError:
        raise GraphLoadError(f"Graph {graph_id!r}: file {source} does not exist") from None
    except Exception as exc:
        raise GraphLoadError(
            f"Graph {graph_id!r}: importing {source} failed: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return source, getattr(module, attr)
    except AttributeError:
        raise GraphLoadError(f"Graph {graph_id!r}: {source} has no attribute {attr!r}") from None


def _import_file(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(path)
    name = f"agentserver_user_graphs.{path.stem}_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec and module_spec.loader
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class GraphRegistry:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._graphs: dict[str, LoadedGraph] = {}
        for entry in config.graphs:
            source, target = _import_target(config, entry.graph_id, entry.spec)
            if not isinstance(target, (Pregel, StateGraph)) and not callable(target):
                raise GraphLoadError(
                    f"Graph {entry.graph_id!r}: {source}:{entry.spec.rpartition(':')[2]} is a "
                    f"{type(target).__name__}, not a graph or a graph factory"
                )
            self._graphs[entry.graph_id] = LoadedGraph(
                entry.graph_id, entry.description, source, target
            )

    def ids(self) -> list[str]:
        return list(self._graphs)

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._graphs

    def get(self, graph_id: str) -> LoadedGraph:
        return self._graphs[graph_id]


@cache
def _registry_for(config: ServerConfig) -> GraphRegistry:
    return GraphRegistry(config)


def get_registry() -> GraphRegistry:
    """The registry of the configured graphs, imported on first use."""
    return _registry_for(get_config())
