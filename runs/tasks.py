"""Celery entry points only; the work is in the executor, webhooks and sweeper modules."""

from __future__ import annotations

from celery import shared_task

from runs import dispatch, sweeper, webhooks


@shared_task(name=dispatch.EXECUTE_TASK, ignore_result=True)
def execute_run(run_id: str) -> None:
    dispatch.execute_and_follow_up(run_id)


@shared_task(name=dispatch.WEBHOOK_TASK, ignore_result=True)
def deliver_webhook(url: str, payload: dict) -> None:
    webhooks.deliver_webhook(url, payload)


@shared_task(name="runs.tasks.sweep_runs", ignore_result=True)
def sweep_runs() -> None:
    sweeper.sweep_runs()
