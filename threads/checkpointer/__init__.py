"""LangGraph checkpointer on the Django ORM, with the schema of langgraph-checkpoint-postgres.

A checkpoint row holds the checkpoint without its channel values; each value is a
``CheckpointBlob`` keyed by (channel, version) and written only when ``put`` is told the
version is new, so an unchanged message history is stored once, not at every step.
Pending writes are keyed by (checkpoint, task, idx) and inserted with conflicts ignored,
so retried tasks are idempotent; writes to special channels (``WRITES_IDX_MAP``) use
negative indexes and are upserted.

Modules: ``saver`` (reads, writes, async methods), ``sql`` (the hot paths' statements and
how they reach the database), ``maintenance`` (delete, copy, prune), ``workers`` (the
threads of the async methods).
"""

from threads.checkpointer.saver import DjangoCheckpointSaver

__all__ = ["DjangoCheckpointSaver"]
