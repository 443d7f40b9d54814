"""Recovery: runs whose worker died or whose message was lost are sent again.

Runs from beat every few seconds (and from a thread in ``manage.py dev``). The claim in the
executor decides who runs, so re-sending a run that is in fact alive is harmless.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from agentserver.conf import server_settings
from agentserver.events import get_event_bus
from runs.dispatch import dispatch_run
from runs.models import ACTIVE_RUN_STATUSES, Run, RunStatus
from runs.queue import lock_threads, next_queued_run, release_thread
from threads.checkpointer import DjangoCheckpointSaver
from threads.models import Thread, ThreadStatus

logger = logging.getLogger(__name__)


def sweep_runs() -> dict[str, int]:
    """One pass: re-dispatch lost runs, fail runs out of attempts, finish orphaned cancels."""
    now = timezone.now()
    expired = Run.objects.filter(status=RunStatus.RUNNING, lease_expires_at__lt=now)
    exhausted = _fail_exhausted(expired.filter(attempt__gte=server_settings.RUN_MAX_ATTEMPTS, cancel_action=""))
    cancelled = _finish_orphaned_cancels(expired.exclude(cancel_action=""))
    stale_after = now - timedelta(seconds=server_settings.PENDING_REDISPATCH_SECONDS)
    running_on_thread = Run.objects.filter(thread_id=OuterRef("thread_id"), status=RunStatus.RUNNING)
    lost = list(
        Run.objects.filter(
            Q(status=RunStatus.RUNNING, lease_expires_at__lt=now, cancel_action="")
            | Q(status=RunStatus.PENDING, created_at__lte=stale_after) & ~Exists(running_on_thread)
        ).values_list("run_id", flat=True)[:1000]
    )
    for run_id in lost:
        dispatch_run(str(run_id))
    return {"redispatched": len(lost), "exhausted": exhausted, "cancelled": cancelled}


def _fail_exhausted(runs: QuerySet[Run]) -> int:
    failed = 0
    for run in runs:
        error = {
            "error": "WorkerLost",
            "message": f"Run gave up after {run.attempt} attempts: its worker stopped responding.",
        }
        with transaction.atomic():
            lock_threads([run.thread_id])
            updated = Run.objects.filter(pk=run.pk, lease_token=run.lease_token, status=RunStatus.RUNNING).update(
                status=RunStatus.ERROR, error=error, output={"__error__": error}, ended_at=timezone.now()
            )
            if updated:
                _end(run, RunStatus.ERROR, error)
                failed += 1
    return failed


def _finish_orphaned_cancels(runs: QuerySet[Run]) -> int:
    """A run cancelled while its worker was gone: apply the cancel here."""
    done = 0
    for run in runs:
        with transaction.atomic():
            lock_threads([run.thread_id])
            if run.cancel_action == "rollback":
                DjangoCheckpointSaver().delete_for_runs([str(run.run_id)])
                updated = Run.objects.filter(pk=run.pk, lease_token=run.lease_token).delete()[0]
            else:
                updated = Run.objects.filter(pk=run.pk, lease_token=run.lease_token).update(
                    status=RunStatus.INTERRUPTED, ended_at=timezone.now()
                )
            if updated:
                _end(run, "rollback" if run.cancel_action == "rollback" else RunStatus.INTERRUPTED, None)
                done += 1
    return done


def _end(run: Run, status: str, error: dict | None) -> None:
    """Free the thread, close the event stream and start the next queued run."""
    others = Run.objects.filter(thread_id=run.thread_id, status__in=ACTIVE_RUN_STATUSES).exists()
    if error is not None and not others:
        Thread.objects.filter(pk=run.thread_id).update(status=ThreadStatus.ERROR, error=error)
    else:
        release_thread(run.thread_id)
    output = {"__error__": error} if error else None
    ended = {"status": status, "output": output}
    transaction.on_commit(lambda: get_event_bus().end(str(run.run_id), ended, thread_id=str(run.thread_id)))
    transaction.on_commit(lambda: [dispatch_run(r) for r in next_queued_run(run.thread_id)])
