"""Protocol commands on a thread: ``run.start``, ``input.respond``, ``agent.getTree``.

Answered on ``POST /threads/{tid}/commands`` and on the websocket (which adds the
subscription commands). Replies are ``{"type": "success", "id", "result", "meta":
{"applied_through_seq"}}`` or ``{"type": "error", "id", "error": <code>, "message"}``.

``applied_through_seq`` is the thread's ``seq`` read *before* the command acted: every
event a run started by the command produces comes after it, so a client that resumes
from it misses none of them.
"""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework.exceptions import ValidationError

from agentserver.asyncdb import database_sync_to_async
from agentserver.errors import APIError, flatten_validation_errors
from agentserver.validation import validated
from runs import services
from runs.models import ACTIVE_RUN_STATUSES
from runs.protocol.source import RUN_STREAM_MODES, snapshot
from runs.serializers.runs import ThreadRunCreateSerializer
from threads.models import Thread, ThreadStatus

SUBSCRIPTION_COMMANDS = {"subscription.subscribe", "subscription.unsubscribe", "subscription.reconnect"}
STRATEGIES = {"reject", "interrupt", "rollback", "enqueue"}


class CommandError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def is_command(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("id"), int) and isinstance(payload.get("method"), str)


def success(command_id: Any, result: dict, seq: int | None = None) -> dict:
    reply: dict[str, Any] = {"type": "success", "id": command_id, "result": result}
    if seq is not None:
        reply["meta"] = {"applied_through_seq": seq}
    return reply


def error(command_id: Any, code: str, message: str) -> dict:
    return {"type": "error", "id": command_id, "error": code, "message": message}


MALFORMED = "Protocol commands must include an integer id and string method."


async def handle_command(thread_id: str, command: dict, *, headers: dict[str, str]) -> dict:
    """The reply to one well-formed command (see ``is_command``)."""
    method, params = command["method"], command.get("params") or {}
    try:
        if not isinstance(params, dict):
            raise CommandError("invalid_argument", "params must be an object")
        if method == "run.start":
            seq = (await snapshot(thread_id)).seq
            return success(command["id"], await _db(start_run)(thread_id, params, headers), seq)
        if method == "input.respond":
            seq = (await snapshot(thread_id)).seq
            return success(command["id"], await _db(respond)(thread_id, params, headers), seq)
        if method == "agent.getTree":
            translator = await snapshot(thread_id)
            run = translator.runs.get(str(params.get("run_id"))) if params.get("run_id") else translator.latest_run
            if run is None:
                raise CommandError("no_such_run", "No run is bound to this thread.")
            return success(command["id"], {"tree": run.tree()}, translator.seq)
        if method in SUBSCRIPTION_COMMANDS:
            raise CommandError("not_supported", f"{method} is only available on the websocket")
        raise CommandError("unknown_command", f"Unknown protocol command: {method}")
    except CommandError as exc:
        return error(command["id"], exc.code, exc.message)


def _db(func: Any) -> Any:
    """ORM work off the event loop (a shared pool, not Django's single sync thread)."""
    return database_sync_to_async(_as_command_errors(func))


def _as_command_errors(func: Any) -> Any:
    def call(*args: Any) -> Any:
        try:
            return func(*args)
        except ValidationError as exc:
            raise CommandError("invalid_argument", flatten_validation_errors(exc.detail)) from None
        except APIError as exc:
            code = "permission_denied" if exc.status_code in (401, 403) else "invalid_argument"
            raise CommandError(code, str(exc.detail)) from None

    return call


# ----------------------------------------------------------------------- run.start


def _checkpoint_id(config: Any) -> Any:
    configurable = config.get("configurable") if isinstance(config, dict) else None
    return configurable.get("checkpoint_id") if isinstance(configurable, dict) else None


def _run_data(params: dict, **fields: Any) -> dict:
    strategy = params.get("multitaskStrategy") or params.get("multitask_strategy")
    data = {
        "config": params.get("config") or {},
        "context": params.get("context") or {},
        "metadata": params.get("metadata") or {},
        "stream_mode": RUN_STREAM_MODES,
        "stream_subgraphs": True,
        "stream_resumable": True,
        "if_not_exists": "create",
        "multitask_strategy": strategy if strategy in STRATEGIES else "enqueue",
        **fields,
    }
    return validated(ThreadRunCreateSerializer, data)


def start_run(thread_id: str, params: dict, headers: dict[str, str]) -> dict:
    """Start a run on the thread (created if missing); on an interrupted thread, resume it."""
    assistant_id = params.get("assistant_id")
    if not isinstance(assistant_id, str) or not assistant_id:
        raise CommandError("invalid_argument", "run.start requires an assistant_id.")
    thread = Thread.objects.filter(pk=thread_id).first()
    value = params.get("input")
    resume = value is not None and thread is not None and thread.status == ThreadStatus.INTERRUPTED
    data = _run_data(
        params,
        assistant_id=assistant_id,
        input=None if resume else value,
        command={"resume": value} if resume else None,
        checkpoint_id=_checkpoint_id(params.get("config")),
    )
    run = services.create_run(data, thread_id=uuid.UUID(thread_id), headers=headers)
    return {"run_id": str(run.run_id)}


# ------------------------------------------------------------------- input.respond


def _responses(params: dict) -> dict[str, Any]:
    """``{interrupt_id: response}`` from the one-response or the ``responses`` form."""
    entries = params.get("responses")
    if entries is None:
        entries = [params]
    if not isinstance(entries, list) or not entries:
        raise CommandError("invalid_argument", "input.respond requires at least one response.")
    resume: dict[str, Any] = {}
    for entry in entries:
        interrupt_id = entry.get("interrupt_id") if isinstance(entry, dict) else None
        if not isinstance(interrupt_id, str):
            raise CommandError("invalid_argument", "input.respond requires an interrupt_id.")
        namespace = entry.get("namespace", [])
        if not isinstance(namespace, list) or not all(isinstance(s, str) for s in namespace):
            raise CommandError("invalid_argument", "input.respond requires namespace to be a list of strings.")
        resume[interrupt_id] = entry.get("response")
    return resume


def _pending_interrupts(thread: Thread) -> set[str]:
    groups = thread.interrupts.values() if isinstance(thread.interrupts, dict) else []
    return {item.get("id") for group in groups for item in group if isinstance(item, dict)}


def respond(thread_id: str, params: dict, headers: dict[str, str]) -> dict:
    """Resume the thread's interrupts with the given responses, as a new run.

    While the interrupted run is still finishing (its interrupts are not stored yet) the
    resume is queued behind it; otherwise each interrupt must be pending on the thread.
    """
    resume = _responses(params)
    thread = Thread.objects.filter(pk=thread_id).first()
    assistant_id = (thread.metadata or {}).get("assistant_id") if thread is not None else None
    if thread is None or not assistant_id:
        raise CommandError("no_such_run", "No interrupted run is bound to this thread.")
    if not thread.runs.filter(status__in=ACTIVE_RUN_STATUSES).exists():
        # Read after the check: a run's end stores its status and the thread's interrupts together.
        thread.refresh_from_db(fields=["interrupts"])
        unknown = sorted(set(resume) - _pending_interrupts(thread))
        if unknown:
            raise CommandError("no_such_interrupt", f"Unknown or already-consumed interrupt: {unknown[0]}")
    command: dict[str, Any] = {"resume": resume}
    for key in ("update", "goto"):
        if params.get(key) is not None:
            command[key] = params[key]
    data = _run_data({**params, "multitaskStrategy": "enqueue"}, assistant_id=assistant_id, command=command)
    services.create_run(data, thread_id=uuid.UUID(thread_id), headers=headers)
    return {}
