"""The object seam: every byte of a store goes through a :class:`Backend`.

- :mod:`~cryostash.objects.backend`: the protocol (:class:`Backend`, :class:`WriteBatch`,
  :class:`ObjectInfo`), over typed keys (:mod:`~cryostash.objects.key`: :class:`Key`,
  :class:`Kind`);
- :mod:`~cryostash.objects.errors`: the sentinel errors every backend raises at its
  boundary (:class:`NotFound`, :class:`AlreadyExists`, :class:`Transient`,
  :class:`Permanent`);
- backends: :mod:`~cryostash.objects.local` (the local disk, crash-safe writes in
  :mod:`~cryostash.objects.localfs`) and :mod:`~cryostash.objects.fsspec_backend` (any
  fsspec file system; S3 defaults in :mod:`~cryostash.objects.s3`);
- wrappers, extending :mod:`~cryostash.objects.forwarding`: retrying
  (:mod:`~cryostash.objects.retrying`, by a :class:`RetryPolicy`) and caching
  (:mod:`~cryostash.objects.caching`, over the :class:`ChunkCache`);
- :mod:`~cryostash.objects.location`: a backend from a store URL.

It knows nothing of checkpoints, manifests, SQL or CRIU: the checkpoint format
(:mod:`cryostash.store`) is built on top. Importing it does not import fsspec; opening a
store that is not on the local disk does.
"""

from cryostash.objects.backend import Backend, Buffer, ObjectInfo, WriteBatch
from cryostash.objects.cache import ChunkCache
from cryostash.objects.errors import (
    AlreadyExists,
    BackendError,
    NotFound,
    Permanent,
    PermissionDenied,
    Transient,
)
from cryostash.objects.key import Key, Kind
from cryostash.objects.retry_policy import RetryPolicy

__all__ = [
    "AlreadyExists",
    "Backend",
    "BackendError",
    "Buffer",
    "ChunkCache",
    "Key",
    "Kind",
    "NotFound",
    "ObjectInfo",
    "Permanent",
    "PermissionDenied",
    "RetryPolicy",
    "Transient",
    "WriteBatch",
]
