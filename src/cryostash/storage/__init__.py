"""Storage: the :class:`Store` of checkpoints over a :class:`Backend` (local disk or fsspec).

The backend protocol (:mod:`~cryostash.storage.backend`) is the seam every byte goes
through: :mod:`~cryostash.storage.local` and :mod:`~cryostash.storage.remote` implement
it, :mod:`~cryostash.storage.retrying` and :mod:`~cryostash.storage.caching` wrap it,
:mod:`~cryostash.storage.location` opens one from a URL. The :class:`Store`
(:mod:`~cryostash.storage.store`) keeps the checkpoint folder contract (create-only
manifest, list, delete) and the content-addressed chunk area over it, and knows nothing
of SQL or CRIU. Importing this package does not import fsspec; opening a store that is
not on the local disk does.
"""

from cryostash.storage.backend import Backend, Buffer, ObjectInfo, WriteBatch
from cryostash.storage.cache import ChunkCache
from cryostash.storage.layout import is_digest, validate_digest
from cryostash.storage.localfs import Progress
from cryostash.storage.manifest import FORMAT_VERSION, Manifest, ManifestMismatch, StoredManifest
from cryostash.storage.retrying import RetryPolicy
from cryostash.storage.store import ChunkBatch, FetchedChunk, Store

__all__ = [
    "FORMAT_VERSION",
    "Backend",
    "Buffer",
    "ChunkBatch",
    "ChunkCache",
    "FetchedChunk",
    "Manifest",
    "ManifestMismatch",
    "ObjectInfo",
    "Progress",
    "RetryPolicy",
    "Store",
    "StoredManifest",
    "WriteBatch",
    "is_digest",
    "validate_digest",
]
