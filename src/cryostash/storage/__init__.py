"""Storage: one :class:`Store` over an fsspec filesystem and root URL.

It keeps the checkpoint folder contract (create-only manifest write, list, delete)
and a content-addressed blob area, and knows nothing of SQL or CRIU. Importing this
package does not import fsspec; opening a :class:`Store` that is not on the local disk
does.
"""

from cryostash.storage.layout import is_digest, validate_digest
from cryostash.storage.localfs import Progress
from cryostash.storage.location import canonical_url, redact_url
from cryostash.storage.manifest import FORMAT_VERSION, Manifest, ManifestMismatch, StoredManifest
from cryostash.storage.store import Store

__all__ = [
    "FORMAT_VERSION",
    "Manifest",
    "ManifestMismatch",
    "Progress",
    "Store",
    "StoredManifest",
    "canonical_url",
    "is_digest",
    "redact_url",
    "validate_digest",
]
