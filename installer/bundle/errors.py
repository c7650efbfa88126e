"""The bundle's one error: what went wrong, what to do, and the exit code (stdlib-only).

The codes follow appliance/errors.py: 65 a bundle refused (tampered, badly signed, unknown key,
older than what is installed, wrong Python), 66 something not found, 70 the llama.cpp build or
the model self-test failed on this box, 74 the box's folders cannot be written, 78 a wrong
option or key file. `gemba bundle` turns it into a GembaError; the bundle's install.py prints it.
"""

from __future__ import annotations


class BundleError(Exception):
    """A failure a person can act on: `message` says what happened, `hint` what to do."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 65) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


REFUSED = 65
NOT_FOUND = 66
FAILED_HERE = 70
STORAGE = 74
SETUP = 78
