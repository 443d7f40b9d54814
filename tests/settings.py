"""Test settings: Postgres as the default database (CI has it), SQLite as a second alias.

The checkpointer and store run their conformance tests on both aliases in one session.
``pooled`` is the default database again, through a connection pool as the server reaches
Postgres (``agentserver.settings``), for the code that borrows pooled connections itself.
"""

from __future__ import annotations

import os

import dj_database_url

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/agentserver")
os.environ.setdefault("AGENTSERVER_CONFIG", os.path.join(os.path.dirname(__file__), "graphs", "langgraph.json"))

from agentserver.settings import *  # noqa: E402,F401,F403
from agentserver.settings import BASE_DIR, DATABASES  # noqa: E402

DATABASES["default"] = dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=0)
DATABASES["sqlite"] = {
    "ENGINE": "agentserver.sqlite",
    "NAME": str(BASE_DIR / "test-agentserver.sqlite3"),
    "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    "TEST": {"NAME": str(BASE_DIR / "test-agentserver.sqlite3")},
}
DATABASES["pooled"] = {
    **DATABASES["default"],
    "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 10}},
    "TEST": {"MIRROR": "default"},
}
