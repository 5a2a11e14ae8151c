"""The sentinel errors of the object seam: what a backend raises at its boundary.

Every backend turns what its library raises into one of these (the library's exception
is kept as ``__cause__``), so that nothing above a backend guesses from class names or
error codes (Go's ``fs.ErrNotExist``, restic's ``IsNotExist``/``IsPermanentError``):

- :class:`NotFound` (a ``FileNotFoundError``): no object at the key;
- :class:`AlreadyExists` (a ``FileExistsError``): a create-only write found the key taken;
- :class:`Transient`: retrying the same call may succeed (timeouts, connection resets,
  throttling, 5xx); the retrying wrapper retries these and nothing else;
- :class:`Permanent`: retrying will not help; :class:`PermissionDenied` is the one of
  them that callers tell apart.

Any of them may carry :attr:`BackendError.problem`, a phrase saying why the store cannot
be used at all (``the bucket does not exist``, ``cannot connect to the endpoint: ...``).
Programming errors (TypeError, AttributeError, NameError, AssertionError) are never
turned into sentinels: they are bugs. :func:`from_os_error` and :func:`classify` are the
shared boundary helpers; messages are the library's own text, redacted
(:func:`cryostash.redact.redact_text`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cryostash.redact import redact_text


class BackendError(Exception):
    """Base of the sentinel errors (see the module docstring).

    Attributes:
        problem: why the store cannot be used at all, or None.
    """

    problem: str | None = None


class NotFound(BackendError, FileNotFoundError):
    """No object at the key (a folder is not an object either)."""


class AlreadyExists(BackendError, FileExistsError):
    """A create-only write found the key taken; the object there is left intact."""


class Transient(BackendError):
    """A failure that retrying the same call may cure."""


class Permanent(BackendError):
    """A failure that retrying will not cure."""


class PermissionDenied(Permanent):
    """The store refused the call (file permissions, S3 ``AccessDenied``)."""


#: Exceptions that are bugs, never backend conditions: raised as they are.
BUGS = (TypeError, AttributeError, NameError, AssertionError)
#: errno values for which retrying the same call may succeed.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.ETIMEDOUT,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.EAGAIN,
        errno.EBUSY,  # s3fs: SlowDown, ServiceUnavailable, 503, 409
        errno.EREMOTEIO,  # s3fs: 500 InternalError
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
    }
)
#: errno values meaning "could not connect at all".
UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}
)


def detail(exc: BaseException) -> str:
    """The library's message of ``exc`` (its class name if it has none), redacted."""
    return redact_text(str(exc) or type(exc).__name__)


def sentinel(
    cls: type[BackendError], exc: BaseException, problem: str | None = None
) -> BackendError:
    """A ``cls`` carrying ``exc``'s (redacted) message and ``problem``; raise it ``from exc``."""
    err = cls(detail(exc))
    err.problem = problem
    return err


def from_os_error(exc: OSError) -> BackendError:
    """The sentinel for an ``OSError`` (by its class and errno)."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return sentinel(NotFound, exc)
    if isinstance(exc, FileExistsError):
        return sentinel(AlreadyExists, exc)
    if isinstance(exc, PermissionError):
        return sentinel(PermissionDenied, exc)
    if isinstance(exc, TimeoutError | ConnectionError) or exc.errno in TRANSIENT_ERRNOS:
        unreachable = exc.errno in UNREACHABLE_ERRNOS or isinstance(exc, ConnectionRefusedError)
        problem = f"cannot connect to the endpoint: {detail(exc)}" if unreachable else None
        return sentinel(Transient, exc, problem)
    return sentinel(Permanent, exc)


def classify(exc: Exception) -> BackendError:
    """The sentinel for any exception a backend's library raised (bugs excluded: check
    :data:`BUGS` first): ``OSError`` by :func:`from_os_error`, anything else
    :class:`Permanent`."""
    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, OSError):
        return from_os_error(exc)
    return sentinel(Permanent, exc)


@contextmanager
def boundary(sort: Callable[[Exception], BackendError] = classify) -> Iterator[None]:
    """Run the body; what it raises leaves as the sentinel ``sort`` picks, the original
    as its cause (bugs, sentinels and ``BaseException`` such as Ctrl-C as they are)."""
    try:
        yield
    except BUGS:
        raise
    except Exception as exc:
        err = sort(exc)
        if err is exc:
            raise
        raise err from exc
