"""The repository layer: :class:`Repository`, what every operation works on, and the
mechanisms the verbs share below their policy.

- :mod:`~cryostash.repository.repository`: the catalog, the stores and the shared lookups
  (a checkpoint's row, the newest matching one, its verified manifest, an engine, a
  scratch folder);
- :mod:`~cryostash.repository.manifests`: a catalog row's manifest as every reader loads it;
- :mod:`~cryostash.repository.reservations`: who holds a create's reservation, whether it
  still lives, keeping it alive;
- :mod:`~cryostash.repository.cleanup`: removing what nobody needs any more (a checkpoint,
  unreferenced blobs, what a failed create wrote);
- :mod:`~cryostash.repository.lazy_helper` and :mod:`~cryostash.repository.lazy_session`:
  the detached helper process of a lazy restore.
"""

from cryostash.repository.repository import Repository

__all__ = ["Repository"]
