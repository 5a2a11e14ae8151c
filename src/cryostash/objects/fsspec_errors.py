"""How an fsspec library's exception becomes a sentinel (:mod:`cryostash.objects.errors`).

Used at the boundary of :class:`~cryostash.objects.fsspec_backend.FsspecBackend` only.
Decided by types and error codes, never by class-name fragments:

- S3-style error codes (botocore ``ClientError.response``, anywhere in the cause chain):
  ``NoSuchBucket`` and rejected credentials make the store unusable (a ``problem``),
  ``PreconditionFailed``/412 is :class:`~cryostash.objects.errors.AlreadyExists`,
  ``AccessDenied``/403 :class:`~cryostash.objects.errors.PermissionDenied`, throttling,
  5xx and ``ConditionalRequestConflict`` :class:`~cryostash.objects.errors.Transient`;
- the transport's exception types (botocore's ``ConnectionError`` and
  ``HTTPClientError``, aiohttp's ``ClientConnectionError``; imported only if installed)
  are transient, those that mean "could not connect at all" also a problem;
- botocore's ``NoCredentialsError`` is a problem (no credentials at all);
- any other ``OSError`` by :func:`~cryostash.objects.errors.from_os_error`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

from cryostash.objects.errors import (
    UNREACHABLE_ERRNOS,
    AlreadyExists,
    BackendError,
    NotFound,
    Permanent,
    PermissionDenied,
    Transient,
    detail,
    from_os_error,
    sentinel,
)

#: S3-style error codes worth retrying (409 ConditionalRequestConflict: a concurrent
#: conditional write is in flight; the retry then sees 412 or succeeds).
TRANSIENT_CODES = frozenset(
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
CREDENTIAL_CODES = frozenset(
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
_NO_CREDENTIALS = (
    "no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or "
    "AWS_PROFILE, or the storage options key and secret)"
)


_Types = tuple[type[BaseException], ...]


@functools.cache
def _types() -> tuple[_Types, _Types, _Types]:
    """(transient, unreachable, no-credentials) exception types of the installed
    transports (empty tuples for those not installed)."""
    transient: list[type[BaseException]] = []
    unreachable: list[type[BaseException]] = []
    missing: list[type[BaseException]] = []
    try:
        from botocore import exceptions as boto  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        transient += [boto.ConnectionError, boto.HTTPClientError]
        unreachable += [
            boto.EndpointConnectionError,
            boto.ConnectTimeoutError,
            boto.ProxyConnectionError,
        ]
        missing.append(boto.NoCredentialsError)
    try:
        import aiohttp
    except ImportError:
        pass
    else:
        transient.append(aiohttp.ClientConnectionError)
        unreachable.append(aiohttp.ClientConnectorError)
    return tuple(transient), tuple(unreachable), tuple(missing)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes (explicit or implicit), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def response_code(exc: BaseException) -> str | None:
    """The S3-style error code of ``exc`` or of its cause (botocore ClientError)."""
    for link in chain(exc):
        response = getattr(link, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            code = error.get("Code") if isinstance(error, dict) else None
            if code is not None:
                return str(code)
    return None


def _problem(exc: BaseException, code: str | None) -> str | None:
    if code == "NoSuchBucket":
        return "the bucket does not exist"
    if code in CREDENTIAL_CODES:
        return f"the credentials were rejected ({code}: {detail(exc)})"
    _, unreachable, missing = _types()
    for link in chain(exc):
        if isinstance(link, missing):
            return _NO_CREDENTIALS
        if isinstance(link, unreachable) or (
            isinstance(link, OSError) and link.errno in UNREACHABLE_ERRNOS
        ):
            return f"cannot connect to the endpoint: {detail(exc)}"
    return None


def _transient(exc: BaseException, code: str | None) -> bool:
    if code in TRANSIENT_CODES:
        return True
    transient, _, _ = _types()
    for link in chain(exc):
        if isinstance(link, (*transient, TimeoutError, ConnectionError)):
            return True
        if isinstance(link, OSError) and isinstance(from_os_error(link), Transient):
            return True
    return False


def classify(exc: Exception) -> BackendError:
    """The sentinel for ``exc``, raised by an fsspec file system (see the module
    docstring); the caller raises it ``from exc``."""
    if isinstance(exc, BackendError):
        return exc
    code = response_code(exc)
    problem = _problem(exc, code)
    if problem is not None:  # a missing bucket stays "not found" (no store there yet)
        missing = isinstance(exc, FileNotFoundError)
        kind = NotFound if missing else Transient if _transient(exc, code) else Permanent
        return sentinel(kind, exc, problem)
    if isinstance(exc, FileNotFoundError):
        return sentinel(NotFound, exc)
    if isinstance(exc, FileExistsError) or code in {"PreconditionFailed", "412"}:
        return sentinel(AlreadyExists, exc)
    if isinstance(exc, PermissionError) or code in {"AccessDenied", "403"}:
        return sentinel(PermissionDenied, exc)
    if _transient(exc, code):
        return sentinel(Transient, exc)
    if isinstance(exc, OSError):
        return from_os_error(exc)
    return sentinel(Permanent, exc)
