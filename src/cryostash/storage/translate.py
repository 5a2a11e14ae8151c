"""The one place where backend exceptions become cryostash errors.

Every :class:`~cryostash.storage.Store` operation runs inside :func:`translating`:

- a :class:`~cryostash.errors.CryostashError` passes through unchanged;
- ``FileNotFoundError`` -> the caller's ``not_found`` error (e.g. CheckpointNotFound),
  else StorageError;
- ``FileExistsError`` or an S3 ``412 Precondition Failed`` -> the caller's ``exists``
  error (e.g. CheckpointExists), else StorageError;
- a store that cannot be used at all -> StorageError saying why, checked first:
  a missing bucket (S3 ``NoSuchBucket``), credentials the server rejects
  (``InvalidAccessKeyId``, ``SignatureDoesNotMatch``, expired tokens), no credentials
  at all, an endpoint that cannot be connected to (see :func:`store_problem`);
- ``PermissionError`` (and S3 403) -> ``StorageError("permission denied: ...")``;
- timeouts, connection failures, throttling, 5xx -> ``StorageError(transient=True)``;
- anything else a backend raises -> StorageError naming the operation and the
  (credential-free) store URL.

The library's own text is redacted first (:func:`cryostash.redact.redact_text`): no
secret it repeats reaches a message.

Programming errors (TypeError, AttributeError, NameError, AssertionError) are not
translated: they are bugs, and hiding them behind "storage error" would hide them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cryostash.errors import CryostashError, StorageError
from cryostash.redact import redact_text

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
#: Fragments of exception class names (anywhere in the MRO) that mean "try again":
#: botocore's EndpointConnectionError/ReadTimeoutError, aiohttp's ClientConnectionError...
_TRANSIENT_NAMES = ("Timeout", "Connection", "Throttl", "ServerDisconnected", "SlowDown")
#: S3-style error codes worth retrying (409 ConditionalRequestConflict: a concurrent
#: conditional write is in flight; the retry then sees 412 or succeeds).
_TRANSIENT_CODES = frozenset(
    {
        "ConditionalRequestConflict",
        "RequestTimeout",
        "SlowDown",
        "InternalError",
        "ServiceUnavailable",
        "Throttling",
        "ThrottlingException",
        "500",
        "503",
    }
)
#: S3-style error codes meaning the server refused the credentials themselves.
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthorizationHeaderMalformed",
    }
)
#: Exception class names (anywhere in the cause chain) meaning "could not connect at all".
_UNREACHABLE_NAMES = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ClientConnectorError",
        "ProxyConnectionError",
    }
)
_UNREACHABLE_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN}
)
#: Exceptions that are bugs, never backend conditions.
_BUGS = (TypeError, AttributeError, NameError, AssertionError)

ErrorFactory = Callable[[], CryostashError]


def _response_code(exc: BaseException) -> str | None:
    """The S3-style error code of ``exc`` or of its cause (botocore ClientError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        response = getattr(current, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            code = error.get("Code") if isinstance(error, dict) else None
            if code is not None:
                return str(code)
        current = current.__cause__ or current.__context__
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes (explicit or implicit), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def store_problem(exc: BaseException) -> str | None:
    """Why the store cannot be used at all, if ``exc`` says so; else None.

    The answer is a phrase for a message: ``the bucket does not exist``, ``the
    credentials were rejected (InvalidAccessKeyId: ...)``, ``no credentials found ...``,
    ``cannot connect to the endpoint: ...``. It never contains a secret (botocore's
    messages name the key id at most, never the secret key).
    """
    code = _response_code(exc)
    detail = redact_text(str(exc) or type(exc).__name__)
    if code == "NoSuchBucket":
        return "the bucket does not exist"
    if code in _CREDENTIAL_CODES:
        return f"the credentials were rejected ({code}: {detail})"
    for link in _chain(exc):
        names = {cls.__name__ for cls in type(link).__mro__}
        if "NoCredentialsError" in names:
            return (
                "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE, or the storage options key and secret)"
            )
        if names & _UNREACHABLE_NAMES or (
            isinstance(link, OSError) and link.errno in _UNREACHABLE_ERRNOS
        ):
            return f"cannot connect to the endpoint: {detail}"
    return None


def is_precondition_failed(exc: BaseException) -> bool:
    """True if ``exc`` says a conditional (create-only) write lost: the object exists."""
    if isinstance(exc, FileExistsError):
        return True
    return _response_code(exc) in {"PreconditionFailed", "412"}


def is_transient(exc: BaseException) -> bool:
    """True if retrying the call that raised ``exc`` may succeed."""
    if isinstance(exc, StorageError):
        return exc.transient
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    if _response_code(exc) in _TRANSIENT_CODES:
        return True
    names = [cls.__name__ for cls in type(exc).__mro__]
    return any(fragment in name for name in names for fragment in _TRANSIENT_NAMES)


def translate(
    exc: Exception,
    *,
    op: str,
    where: str,
    url: str,
    not_found: ErrorFactory | None = None,
    exists: ErrorFactory | None = None,
) -> CryostashError:
    """Return the cryostash error for backend exception ``exc``.

    Args:
        exc: what the backend raised.
        op: the operation, as a verb phrase (``"read manifest"``).
        where: the object concerned, relative to the root (``"blobs/ab/ab..."``).
        url: the credential-free store URL.
        not_found: builds the error for a missing object (default: StorageError).
        exists: builds the error for an object that already exists (default: StorageError).
    """
    if isinstance(exc, CryostashError):
        return exc
    detail = redact_text(str(exc) or type(exc).__name__)  # botocore may repeat a secret
    problem = store_problem(exc)
    if problem is not None:
        return StorageError(
            f"cannot {op} {where} in store {url}: {problem}", transient=is_transient(exc)
        )
    if isinstance(exc, FileNotFoundError) and not_found is not None:
        return not_found()
    if is_precondition_failed(exc) and exists is not None:
        return exists()
    if isinstance(exc, PermissionError) or _response_code(exc) in {"AccessDenied", "403"}:
        return StorageError(f"permission denied: cannot {op} {where} in store {url}: {detail}")
    if is_transient(exc):
        return StorageError(
            f"cannot {op} {where} in store {url} (temporary failure): {detail}", transient=True
        )
    return StorageError(f"cannot {op} {where} in store {url}: {detail}")


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
    except _BUGS:
        raise
    except Exception as exc:
        err = translate(exc, op=op, where=where, url=url, not_found=not_found, exists=exists)
        if err is exc:
            raise
        raise err from exc
