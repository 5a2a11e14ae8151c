""":func:`verified_manifest`: the manifest of a catalog row, as every reader of it loads it."""

from __future__ import annotations

from cryostash.errors import IntegrityError
from cryostash.store import Manifest, ManifestMismatch, Store
from cryostash.store.manifest import load_manifest
from cryostash.types import CheckpointInfo


def verified_manifest(store: Store, info: CheckpointInfo) -> Manifest:
    """The manifest of ``info``, checked against the catalog's digest (bytes that are
    neither valid nor the recorded ones are reported as not matching the catalog).

    Raises:
        CheckpointNotFound / StorageError: the manifest cannot be read.
        ManifestMismatch: valid bytes whose digest is not the recorded one.
        IntegrityError: anything else wrong with it.
    """
    t, n, expected = info.target, info.name, info.manifest_digest
    data = store.manifests.read(t, n)
    digest_of = store.sealing.manifest_digest  # keyed on an encrypted store
    try:
        loaded = load_manifest(data, target=t, name=n, expected=expected, digest_of=digest_of)
        return loaded.manifest
    except ManifestMismatch:
        raise
    except IntegrityError:
        actual = digest_of(data)
        if not expected or actual == expected:
            raise
        raise IntegrityError(
            f"manifest of {t}/{n} does not match the catalog "
            f"(expected BLAKE3 {expected}, got {actual})"
        ) from None
