"""How an error becomes an HTTP reply: its status and its JSON body, for the daemon's own
API (``/v1``) and for the Docker-compatible routes.

``/v1``: ``{"message": ..., "exit_code": N, "kind": ClassName}`` (and ``"multiline":
true`` for a message of several lines of cryostash's own, such as an engine's log tail),
where ``message`` and ``exit_code`` are what the command line would print and exit with,
with the status of :data:`V1_STATUS` (the first class of the error's MRO found there),
500 otherwise.
An unexpected error (not a :class:`~cryostash.errors.CryostashError`) is ``500``,
``{"message": "internal error (TypeName): ...", "exit_code": 1, "kind": "InternalError"}``.

Docker routes: ``{"message": ...}`` with the same message and the status Docker's own
daemon (moby 28, the engine whose messages the command line copies) answers: every
checkpoint error is a plain error there, so ``500`` (a bad name, a name taken, a
checkpoint that does not exist); ``404`` only for a route Docker does not have here.
Every message goes through :func:`cryostash.redact.redact_text` (no secret in a reply).
"""

from __future__ import annotations

from typing import Any

from cryostash.daemon.config import NotAllowed
from cryostash.errors import (
    CheckpointExists,
    CheckpointNotFound,
    CryostashError,
    DaemonError,
    InvalidName,
    ObjectNotFound,
    UsageError,
)
from cryostash.redact import redact_text

#: Error class -> HTTP status of the ``/v1`` API.
V1_STATUS: dict[type[CryostashError], int] = {
    NotAllowed: 403,
    CheckpointNotFound: 404,
    ObjectNotFound: 404,
    CheckpointExists: 409,
    InvalidName: 400,
    UsageError: 400,
    DaemonError: 400,
}


class NotServed(CryostashError):
    """A verb (or an option of one) the daemon does not serve (yet): HTTP 501."""

    exit_code = UsageError.exit_code


def v1_status(error: BaseException) -> int:
    """The ``/v1`` status of ``error``."""
    if isinstance(error, NotServed):
        return 501
    for cls in type(error).__mro__:
        if cls in V1_STATUS:
            return V1_STATUS[cls]
    return 500


def v1_body(error: BaseException) -> dict[str, Any]:
    """The ``/v1`` JSON body of ``error``."""
    if isinstance(error, CryostashError):
        body: dict[str, Any] = {
            "message": redact_text(str(error)),
            "exit_code": error.exit_code,
            "kind": type(error).__name__,
        }
        if error.multiline:
            body["multiline"] = True  # several lines of cryostash's own (a log tail)
        return body
    return {
        "message": redact_text(f"internal error ({type(error).__name__}): {error}"),
        "exit_code": 1,
        "kind": "InternalError",
    }


def docker_status(error: BaseException) -> int:
    """The status Docker's daemon answers for ``error`` on its checkpoint routes."""
    return 501 if isinstance(error, NotServed) else 500


def docker_body(error: BaseException) -> dict[str, Any]:
    """Docker's error body: ``{"message": ...}`` (the command line's words)."""
    return {"message": v1_body(error)["message"]}
