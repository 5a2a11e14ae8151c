"""The one place where backend errors become cryostash errors, in the format's terms.

Backends raise the sentinels of :mod:`cryostash.objects.errors`; every operation of the
checkpoint format runs inside :func:`translating`, which maps them:

- a :class:`~cryostash.errors.CryostashError` passes through unchanged;
- a sentinel with a ``problem`` (the store cannot be used at all: no bucket, rejected or
  missing credentials, an unreachable endpoint) -> ``StorageError`` saying why, checked
  first (transient when the sentinel is :class:`~cryostash.objects.errors.Transient`);
- :class:`~cryostash.objects.errors.NotFound` -> the caller's ``not_found`` error (e.g.
  CheckpointNotFound), else StorageError;
- :class:`~cryostash.objects.errors.AlreadyExists` -> the caller's ``exists`` error (e.g.
  CheckpointExists), else StorageError;
- :class:`~cryostash.objects.errors.PermissionDenied` ->
  ``StorageError("permission denied: ...")``;
- :class:`~cryostash.objects.errors.Transient` -> ``StorageError(transient=True)``;
- anything else -> StorageError naming the operation and the (credential-free) store URL.

Messages carry the library's own text, redacted (:func:`cryostash.redact.redact_text`).
Programming errors (TypeError, AttributeError, NameError, AssertionError) are not
translated: they are bugs, and hiding them behind "storage error" would hide them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cryostash.errors import CryostashError, StorageError
from cryostash.objects.errors import (
    BUGS,
    AlreadyExists,
    BackendError,
    NotFound,
    PermissionDenied,
    Transient,
    classify,
    detail,
)

ErrorFactory = Callable[[], CryostashError]


def translate(
    exc: Exception,
    *,
    op: str,
    where: str,
    url: str,
    not_found: ErrorFactory | None = None,
    exists: ErrorFactory | None = None,
) -> CryostashError:
    """Return the cryostash error for ``exc``, raised by a backend.

    Args:
        exc: what the backend raised (a sentinel; anything else is classified first).
        op: the operation, as a verb phrase (``"read manifest"``).
        where: the object concerned, relative to the root (``"blobs/ab/ab..."``).
        url: the credential-free store URL.
        not_found: builds the error for a missing object (default: StorageError).
        exists: builds the error for an object that already exists (default: StorageError).
    """
    if isinstance(exc, CryostashError):
        return exc
    err: BackendError = exc if isinstance(exc, BackendError) else classify(exc)
    transient = isinstance(err, Transient)
    text = detail(err)
    if err.problem is not None:
        return StorageError(
            f"cannot {op} {where} in store {url}: {err.problem}", transient=transient
        )
    if isinstance(err, NotFound) and not_found is not None:
        return not_found()
    if isinstance(err, AlreadyExists) and exists is not None:
        return exists()
    if isinstance(err, PermissionDenied):
        return StorageError(f"permission denied: cannot {op} {where} in store {url}: {text}")
    if transient:
        return StorageError(
            f"cannot {op} {where} in store {url} (temporary failure): {text}", transient=True
        )
    return StorageError(f"cannot {op} {where} in store {url}: {text}")


@contextmanager
def translating(
    op: str,
    where: str,
    *,
    url: str,
    not_found: ErrorFactory | None = None,
    exists: ErrorFactory | None = None,
) -> Iterator[None]:
    """Run the body and translate what a backend raises (see :func:`translate`).

    ``KeyboardInterrupt`` and other ``BaseException`` pass through untouched.
    """
    try:
        yield
    except BUGS:
        raise
    except Exception as exc:
        err = translate(exc, op=op, where=where, url=url, not_found=not_found, exists=exists)
        if err is exc:
            raise
        raise err from exc


def not_writable(exc: Exception, url: str) -> CryostashError:
    """The error of a failed writability probe (``doctor``, early failure):
    ``store URL: PROBLEM`` or ``store URL is not writable: [permission denied: ]DETAIL``."""
    if isinstance(exc, CryostashError):
        return exc
    err: BackendError = exc if isinstance(exc, BackendError) else classify(exc)
    transient = isinstance(err, Transient)
    if err.problem is not None:
        return StorageError(f"store {url}: {err.problem}", transient=transient)
    text = detail(err)
    if isinstance(err, PermissionDenied):
        text = f"permission denied: {text}"
    return StorageError(f"store {url} is not writable: {text}", transient=transient)
