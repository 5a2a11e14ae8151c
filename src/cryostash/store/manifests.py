"""``Manifests``: the commit markers of a checkpoint store.

``checkpoints/<target>/<name>/manifest.json`` (a key of kind
:attr:`~cryostash.objects.key.Kind.MANIFEST`) is written last and create-only: a
checkpoint counts only once its manifest exists. :class:`Manifests` writes, reads, loads
(parses and checks against the catalog's digest: the one loader) and deletes them,
sealed in an encrypted store. Errors are cryostash errors
(:mod:`~cryostash.store.translate`): a missing manifest is
:class:`~cryostash.errors.CheckpointNotFound`, a taken name
:class:`~cryostash.errors.CheckpointExists`. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable

from cryostash.errors import CheckpointExists, CheckpointNotFound, CryostashError
from cryostash.objects.backend import Backend
from cryostash.store import layout
from cryostash.store.manifest import StoredManifest, load_manifest
from cryostash.store.sealing import Sealing
from cryostash.store.translate import translating


class Manifests:
    """The manifests of the store at ``url`` through ``backend``; ``sealing`` gives the
    store's sealing (opening its key on first use)."""

    def __init__(self, backend: Backend, url: str, sealing: Callable[[], Sealing]) -> None:
        self._backend = backend
        self._url = url
        self._sealing = sealing

    def exists(self, target: str, name: str) -> bool:
        """True if ``target``/``name`` has a manifest (is committed in the store)."""
        key = layout.manifest_key(target, name)
        with translating("check", f"manifest of {target}/{name}", url=self._url):
            return self._backend.exists(key)

    def write(self, target: str, name: str, data: bytes) -> None:
        """Write the manifest of ``target``/``name``: create-only and atomic.

        This is the commit marker: call it after every chunk the manifest names is
        stored. Atomic: readers see no manifest or all of ``data``. Create-only: if a
        manifest exists (whoever wrote it), it is left intact and CheckpointExists is
        raised; with the store's ``supports_atomic_create`` this holds against
        concurrent writers on other hosts too.

        Raises:
            CheckpointExists: ``checkpoint with name NAME already exists for container TARGET``.
            StorageError: the write failed; no manifest was written.
        """
        key = layout.manifest_key(target, name)
        sealed = self._sealing().seal(key.path, (data,))

        def taken() -> CryostashError:
            return CheckpointExists(
                f"checkpoint with name {name} already exists for container {target}"
            )

        with translating("write", f"manifest of {target}/{name}", url=self._url, exists=taken):
            self._backend.create(key, b"".join(sealed))

    def read(self, target: str, name: str) -> bytes:
        """The (plain: opened, when the store is encrypted) bytes of the manifest of
        ``target``/``name``.

        Raises:
            CheckpointNotFound: ``checkpoint NAME does not exist for container TARGET``.
            StorageError: the read failed. IntegrityError: sealed and not authentic.
        """
        key = layout.manifest_key(target, name)
        sealing = self._sealing()

        def missing() -> CryostashError:
            return CheckpointNotFound(f"checkpoint {name} does not exist for container {target}")

        with translating(
            "read", f"manifest of {target}/{name}", url=self._url, not_found=missing
        ):
            data = self._backend.get(key)
        return bytes(sealing.open(key.path, data, what=f"manifest of {target}/{name}"))

    def load(self, target: str, name: str, expected: str | None = None) -> StoredManifest:
        """The manifest of ``target``/``name``, parsed and checked against the digest the
        catalog recorded (``expected``; None: not checked). The one manifest loader.

        Raises:
            CheckpointNotFound: no manifest. StorageError: the read failed.
            IntegrityError: not a valid manifest of this checkpoint.
            ManifestMismatch: valid but not the one the catalog recorded.
        """
        data = self.read(target, name)
        digest_of = self._sealing().manifest_digest
        return load_manifest(data, target=target, name=name, expected=expected, digest_of=digest_of)

    def delete(self, target: str, name: str) -> None:
        """Remove the folder of ``target``/``name`` (manifest first, so a crash midway
        leaves it uncommitted). Idempotent: a missing checkpoint is not an error.
        Chunks are not touched (gc or the caller decides which to delete)."""
        key = layout.manifest_key(target, name)
        with translating("delete", f"checkpoint {target}/{name}", url=self._url):
            self._backend.delete(key)
            self._backend.delete_prefix(layout.checkpoint_prefix(target, name))
