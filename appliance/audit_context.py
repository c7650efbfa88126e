"""What the audit trail records about the config and the governor, for the daemon and installer.

The effective config is hashed as canonical JSON of every setting (sorted keys). The API key is
never recorded in clear: only a sha256 of it, so that a new key still shows as a config change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import sqlite_utils

from appliance.config import Settings
from appliance.store import audit

_GOVERNOR_FIELDS = ("mode", "duty", "severity")


def effective_config(settings: Settings) -> dict[str, Any]:
    """Every setting as JSON data, the API key replaced by its hash."""
    config = settings.model_dump(mode="json")
    key = settings.daemon.api_key
    config["daemon"]["api_key"] = (
        "sha256:" + hashlib.sha256(f"gemba api key:{key}".encode()).hexdigest() if key else None)
    return config


def config_sha256(settings: Settings) -> str:
    return hashlib.sha256(audit.canonical(effective_config(settings)).encode()).hexdigest()


def audit_config(db: sqlite_utils.Database, settings: Settings,
                 source: str = "daemon start") -> audit.AnswerContext:
    """Record the effective config when it differs from the last one audited; the context
    answers given with it are recorded under."""
    digest = config_sha256(settings)
    audit.record_config(db, digest, effective_config(settings), source)
    return audit.AnswerContext(digest)


def answer_context(settings: Settings, governor: Callable[[], Mapping[str, Any]]
                   ) -> Callable[[], audit.AnswerContext]:
    """For ChatService: the config's hash (fixed while the daemon runs) and the governor's
    state (`governor()`: its status, e.g. GovernorLoop.status) when each answer is stored."""
    digest = config_sha256(settings)

    def context() -> audit.AnswerContext:
        state = governor()
        return audit.AnswerContext(digest, {name: state.get(name) for name in _GOVERNOR_FIELDS})

    return context
