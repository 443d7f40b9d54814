"""Reading the ``langgraph.json``-compatible config file.

Only the keys the server acts on are interpreted; build-time keys (``python_version``,
``dockerfile_lines``...) are accepted and ignored, as the official CLI passes them to
its image builder, not to the server.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from agentserver.conf import server_settings


class ConfigError(Exception):
    """The config file is missing or malformed; the message says where."""


@dataclass(frozen=True)
class GraphEntry:
    graph_id: str
    spec: str  # "./file.py:attr" or "package.module:attr"
    description: str | None = None


@dataclass(frozen=True, eq=False)  # hashed by identity: one object per config file
class ServerConfig:
    path: Path
    graphs: tuple[GraphEntry, ...]
    dependencies: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name) or {}
        return value if isinstance(value, dict) else {}


def parse_config(path: Path) -> ServerConfig:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Config file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"Config file {path} must hold a JSON object")
    graphs_raw = raw.get("graphs")
    if not isinstance(graphs_raw, dict) or not graphs_raw:
        raise ConfigError(f"Config file {path} needs a non-empty 'graphs' object")
    graphs = []
    for graph_id, value in graphs_raw.items():
        if isinstance(value, str):
            graphs.append(GraphEntry(graph_id, value))
        elif isinstance(value, dict) and isinstance(value.get("path"), str):
            graphs.append(GraphEntry(graph_id, value["path"], value.get("description")))
        else:
            raise ConfigError(
                f"Graph {graph_id!r} in {path}: expected \"./file.py:attr\", \"module:attr\" "
                'or {"path": ..., "description": ...}'
            )
    dependencies = raw.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise ConfigError(f"'dependencies' in {path} must be a list of strings")
    return ServerConfig(
        path=path,
        graphs=tuple(graphs),
        dependencies=tuple(dependencies),
        env=_read_env(raw.get("env"), path.parent),
        raw=raw,
    )


def _read_env(value: Any, base_dir: Path) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if isinstance(value, str):
        env_path = (base_dir / value).resolve()
        if not env_path.exists():
            raise ConfigError(f"env file {env_path} named in the config does not exist")
        return {k: v for k, v in dotenv_values(env_path).items() if v is not None}
    raise ConfigError("'env' must be an object or the path of a .env file")


def apply_config(config: ServerConfig) -> None:
    """Put dependencies on the import path and the env into the environment."""
    for dependency in config.dependencies:
        candidate = (config.base_dir / dependency).resolve()
        if candidate.exists() and str(candidate) not in sys.path:
            sys.path.insert(0, str(candidate))
    for key, value in config.env.items():
        os.environ.setdefault(key, value)


@cache
def _load(path: str) -> ServerConfig:
    config = parse_config(Path(path).resolve())
    apply_config(config)
    return config


def get_config() -> ServerConfig:
    """The config named by ``AGENT_SERVER["CONFIG"]``, parsed once per path."""
    return _load(str(server_settings.CONFIG))
