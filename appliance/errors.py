"""The one error tree: what went wrong, what to do about it, and the exit code.

Raised from the core, rendered only at the edges (`cli.py` prints it, `api/` maps it to a status).

    GembaError                      1
    ├── ConfigError                78  a settings file or value is wrong
    ├── ModelError                 65
    │   ├── InvalidModelId         65  an id or path that may not name a model
    │   ├── ModelNotFound          66  the file is not where the catalog says
    │   └── ModelIntegrityError    65  the file's sha256 is not the catalog's
    ├── StorageError               74  the database cannot be opened or written
    ├── NotFound                   66  a conversation or other record does not exist
    ├── RequestError               65  a request the engine must refuse (e.g. prompt too long)
    ├── EngineError                70  the inference worker failed or crashed
    │   └── NotReady               75  loading, paused by the governor or stopping; retry later
    ├── Busy                       75  the queue is full; retry after a few seconds (HTTP 429)
    ├── Unauthorized               77  a missing or wrong API key
    ├── RequestTooLarge            65  a request body over daemon.max_body_bytes
    └── DaemonUnavailable          69  no daemon answers and none could be started
"""

from __future__ import annotations


class GembaError(Exception):
    """A failure a person can act on: `message` says what happened, `hint` what to do."""

    exit_code = 1
    http_status = 500
    kind = "error"
    retry_after_s: int | None = None
    """For a passing condition: when to try again (HTTP Retry-After)."""
    param: str | None = None
    """The request field at fault, when one is (OpenAI's `param`)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        body = {"type": self.kind, "message": self.message, "hint": self.hint}
        if self.param:
            body["param"] = self.param
        return body


class ConfigError(GembaError):
    exit_code = 78
    kind = "config_error"


class ModelError(GembaError):
    exit_code = 65
    http_status = 503
    kind = "model_error"


class InvalidModelId(ModelError):
    http_status = 400
    kind = "invalid_model_id"


class ModelNotFound(ModelError):
    exit_code = 66
    kind = "model_not_found"


class ModelIntegrityError(ModelError):
    kind = "model_integrity_error"


class StorageError(GembaError):
    exit_code = 74
    http_status = 503
    kind = "storage_error"


class NotFound(GembaError):
    exit_code = 66
    http_status = 404
    kind = "not_found"


class RequestError(GembaError):
    exit_code = 65
    http_status = 400
    kind = "invalid_request"

    def __init__(self, message: str, hint: str = "", param: str | None = None) -> None:
        super().__init__(message, hint)
        self.param = param


class EngineError(GembaError):
    exit_code = 70
    http_status = 503
    kind = "engine_error"


class NotReady(EngineError):
    """The engine cannot take a question now but will: loading, paused or stopping."""

    exit_code = 75
    kind = "not_ready"
    retry_after_s = 5


class DaemonUnavailable(GembaError):
    exit_code = 69
    http_status = 503
    kind = "daemon_unavailable"


class Busy(GembaError):
    exit_code = 75
    http_status = 429
    kind = "busy"
    retry_after_s = 5


class Unauthorized(GembaError):
    exit_code = 77
    http_status = 401
    kind = "unauthorized"


class RequestTooLarge(GembaError):
    exit_code = 65
    http_status = 413
    kind = "request_too_large"
