"""The checkpoint store format, over the object seam (:mod:`cryostash.objects`).

- :mod:`~cryostash.store.store`: the :class:`Store` facade, made of
  :mod:`~cryostash.store.manifests` (the commit markers), :mod:`~cryostash.store.chunks`
  (the content-addressed chunk area) and :mod:`~cryostash.store.maintenance` (inventory,
  strays, empty folders);
- the format itself, no I/O: :mod:`~cryostash.store.layout` (where objects live, their
  typed keys), :mod:`~cryostash.store.manifest` (the manifest document),
  :mod:`~cryostash.store.codec` (chunk encoding), :mod:`~cryostash.store.inventory`
  (sorting a listing into manifests, chunks and strays);
- cryptography: :mod:`~cryostash.store.keys` (configuration and key objects),
  :mod:`~cryostash.store.sealing` (naming and sealing objects),
  :mod:`~cryostash.store.writeonly` (write-only hosts);
- :mod:`~cryostash.store.translate`: backend errors to cryostash errors, in one place.

It knows nothing of SQL or CRIU.
"""

from cryostash.store.chunks import ChunkBatch, FetchedChunk
from cryostash.store.layout import is_digest, validate_digest
from cryostash.store.manifest import FORMAT_VERSION, Manifest, ManifestMismatch, StoredManifest
from cryostash.store.store import Store

__all__ = [
    "FORMAT_VERSION",
    "ChunkBatch",
    "FetchedChunk",
    "Manifest",
    "ManifestMismatch",
    "Store",
    "StoredManifest",
    "is_digest",
    "validate_digest",
]
