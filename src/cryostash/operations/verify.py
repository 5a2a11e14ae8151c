"""``verify``: check catalog <-> manifest <-> blobs of committed checkpoints.

For every committed checkpoint selected (all of a store, one target, or one
checkpoint), :func:`verify` checks that:

- its manifest exists, hashes to the digest the catalog recorded, and is valid
  (parses, names this checkpoint, safe paths, chunk sizes adding up to file sizes);
- every blob (chunk object) the manifest names is in the store with a plausible size:
  a stored object is one encoding tag byte plus the plain bytes, or plus a zstd frame
  only when that is smaller (:mod:`cryostash.store.codec`), so its size is between 1
  and the chunk's plain size + 1 (a truncated object may still look plausible: only
  reading finds that);
- with ``read_data``: every blob decodes and its plain bytes have the recorded size
  and hash (BLAKE3) to its name. Each distinct blob is read once, in parallel. (A
  file's own digest is checked at restore; here it follows from the verified chunks
  and the verified manifest.) With ``subset`` only the blobs of that share are read
  (:mod:`cryostash.operations.verify_subset`: repeated runs cover the whole store).

Each problem names the target, the checkpoint, and where known the file and blob.
Manifests in the store that no catalog row (committed or pending) knows are listed as
``untracked`` (``cryostash catalog rebuild`` imports them, ``gc`` adopts the complete
ones and removes the others after its grace period): they are not problems of any
checkpoint the catalog shows. Pending checkpoints are not verified (readers never see
them). Verification never writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from cryostash.errors import CheckpointNotFound, IntegrityError, ObjectNotFound, UsageError
from cryostash.names import names_ok, validate_name, validate_target
from cryostash.operations.verify_subset import parse_subset, today
from cryostash.repository import Repository
from cryostash.store import Manifest, ManifestMismatch, Store
from cryostash.transfer.progress import Progress
from cryostash.types import CheckpointInfo


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a committed checkpoint.

    ``kind`` is one of ``manifest-missing``, ``manifest-mismatch`` (its bytes are not
    the ones the catalog recorded), ``manifest-corrupt``, ``blob-missing``,
    ``blob-size``, ``blob-corrupt``, ``invalid-name`` (a catalog row whose target or name
    no longer passes the name rule: nothing of it is read; ``rm`` removes it).
    """

    target: str
    name: str
    kind: str
    message: str
    file: str | None = None
    blob: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "target": self.target,
            "name": self.name,
            "kind": self.kind,
            "file": self.file,
            "blob": self.blob,
            "message": self.message,
        }

    def __str__(self) -> str:
        return f"{self.target}/{self.name}: {self.message}"


@dataclass(frozen=True)
class VerifyRequest:
    """What to verify, and how.

    Attributes:
        target: only this target; with ``name``, only that checkpoint.
        name: only this checkpoint (needs ``target``).
        read_data: re-hash every blob (reads every byte; ``repo.jobs`` in parallel).
        checkpoint_dir: the store (default: the repository's default store).
        subset: re-hash only this share of the blobs, ``N%`` or ``K/M`` (implies
            ``read_data``; see :mod:`cryostash.operations.verify_subset`).
        seed: which ``N%`` window (default: today's day number).
    """

    target: str | None = None
    name: str | None = None
    read_data: bool = False
    checkpoint_dir: str | None = None
    subset: str | None = None
    seed: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    """The result of :func:`verify`; ``ok`` when ``problems`` is empty."""

    store_url: str
    read_data: bool
    checkpoints: int
    blobs: int
    bytes_read: int
    problems: tuple[Problem, ...]
    untracked: tuple[tuple[str, str], ...]
    #: ``--read-data-subset``: what was read (:meth:`Subset.describe`), else None.
    subset: str | None = None
    #: The distinct blobs read (all of them with ``read_data``, the subset's with a subset).
    read: frozenset[str] = frozenset()

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (``verify --json``)."""
        return {
            "store": self.store_url,
            "ok": self.ok,
            "read_data": self.read_data,
            "checkpoints": self.checkpoints,
            "blobs": self.blobs,
            "bytes_read": self.bytes_read,
            "subset": self.subset,
            "blobs_read": len(self.read),
            "problems": [p.as_dict() for p in self.problems],
            "untracked": [{"target": t, "name": n} for t, n in self.untracked],
        }


def _read_blob(store: Store, digest: str, size: int) -> tuple[str | None, int]:
    """Read, decode and verify one blob: (None, bytes read) if sound, else (why, 0)."""
    try:
        plain = store.chunks.read(digest, size)
    except ObjectNotFound:
        return "is missing from the store", 0
    except IntegrityError as exc:
        return str(exc).removeprefix(f"blob {digest} ").strip(), 0
    return None, len(plain)


def _invalid_name(info: CheckpointInfo) -> str | None:
    """Why the row's target or name fails the name rule, or None."""
    if names_ok(info.target, info.name):
        return None
    return "the catalog row's target or name fails the name rule; remove it with cryostash rm"


def _check_manifest(store: Store, info: CheckpointInfo) -> tuple[Manifest | None, list[Problem]]:
    t, n = info.target, info.name
    try:
        stored = store.manifests.load(t, n, info.manifest_digest)
    except CheckpointNotFound:
        message = f"manifest is missing from store {store.url}"
        return None, [Problem(t, n, "manifest-missing", message)]
    except ManifestMismatch as exc:  # valid, so its blobs are checked all the same
        message = (
            f"manifest does not match the catalog (expected BLAKE3 {info.manifest_digest}, "
            f"got {exc.stored.digest})"
        )
        return exc.stored.manifest, [Problem(t, n, "manifest-mismatch", message)]
    except IntegrityError as exc:
        return None, [Problem(t, n, "manifest-corrupt", str(exc))]
    return stored.manifest, []


def presence_problem(
    manifest: Manifest, stored: Mapping[str, int], overhead: int = 0
) -> str | None:
    """Why the blobs of ``manifest`` are not all in a store whose objects have the
    ``stored`` sizes (missing, or a size no encoding gives), or None. For gc and rebuild.
    ``overhead``: what sealing adds to an object (``store.sealing.overhead``)."""
    found = _check_presence(manifest.target, manifest.name, manifest, stored, overhead)
    return found[0].message if found else None


def _check_presence(
    t: str, n: str, manifest: Manifest, stored: Mapping[str, int], overhead: int = 0
) -> list[Problem]:
    problems: list[Problem] = []
    for entry in manifest.files:
        for digest, plain in zip(entry.blobs, entry.chunk_sizes, strict=True):
            where = f"blob {digest} of file {entry.path}"
            if digest not in stored:
                message = f"{where} is missing from the store"
                problems.append(Problem(t, n, "blob-missing", message, entry.path, digest))
            elif not 1 + overhead <= stored[digest] <= plain + 1 + overhead:
                message = (
                    f"{where} is corrupt: {stored[digest]} bytes stored, which cannot encode "
                    f"its {plain} bytes"
                )
                problems.append(Problem(t, n, "blob-size", message, entry.path, digest))
    return problems


def _read_problems(
    store: Store,
    checked: Iterable[tuple[CheckpointInfo, Manifest]],
    jobs: int,
    only: Callable[[str], bool] | None = None,
    callback: Progress | None = None,
) -> tuple[list[Problem], list[str], int]:
    """Read and verify every distinct blob of ``checked`` (those ``only`` selects) once;
    the problems found, the blobs read and the plain bytes read. ``callback`` is told the
    plain bytes to read, then each blob's as it is done (from this thread only)."""
    pairs = list(checked)
    sizes: dict[str, int] = {}
    for _, manifest in pairs:
        sizes.update(manifest.chunk_sizes)
    digests = sorted(d for d in sizes if only is None or only(d))
    if callback is not None:
        callback.set_size(sum(sizes[d] for d in digests))
    results: list[tuple[str | None, int]] = []
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for digest, result in zip(
            digests, pool.map(lambda d: _read_blob(store, d, sizes[d]), digests), strict=True
        ):
            results.append(result)
            if callback is not None:
                callback.relative_update(sizes[digest])
    found = dict(zip(digests, results, strict=True))
    problems: list[Problem] = []
    for info, manifest in pairs:
        for entry in manifest.files:
            for digest in dict.fromkeys(entry.blobs):
                why = found[digest][0] if digest in found else None
                if why is None:
                    continue
                kind = "blob-missing" if why.startswith("is missing") else "blob-corrupt"
                message = f"blob {digest} of file {entry.path} {why}"
                problems.append(Problem(info.target, info.name, kind, message, entry.path, digest))
    return problems, digests, sum(size for _, size in results)


def _dedupe(problems: Iterable[Problem]) -> tuple[Problem, ...]:
    seen: dict[tuple[str, str, str | None, str | None, str], Problem] = {}
    for p in problems:  # a blob found missing by the listing and by reading: once
        seen.setdefault((p.target, p.name, p.file, p.blob, p.kind), p)
    return tuple(sorted(seen.values(), key=lambda p: (p.target, p.name, p.file or "", p.kind)))


def verify(repo: Repository, request: VerifyRequest) -> VerifyReport:
    """Verify the committed checkpoints of a store (see the module docstring).

    Raises:
        UsageError: a name without its target; a malformed ``subset``; a ``seed`` without
            an ``N%`` subset.
        InvalidName: bad target or name.
        CheckpointNotFound: ``name`` given and no such committed checkpoint.
        StorageError / CatalogError: the store or catalog could not be read.
    """
    target, name, read_data, seed = request.target, request.name, request.read_data, request.seed
    subset = parse_subset(request.subset) if request.subset else None
    if seed is not None and (subset is None or subset.percent is None):
        raise UsageError("--seed goes with --read-data-subset N%")
    if name is not None and target is None:
        raise UsageError("a checkpoint name needs its target")
    if target is not None:
        validate_target(target)
    if name is not None:
        validate_name(name)
    store = repo.store(request.checkpoint_dir)
    store.unlock(restore=True)  # the key (KeyRequired, WrongKey, RestoreKeyRequired) first
    if target is not None and name is not None:
        infos = [repo.catalog.get(store.url, target, name)]
    else:
        infos = repo.catalog.list(store.url, target)
    inventory = store.maintenance.inventory()
    stored = {d: obj.size for d, obj in inventory.blobs.items()}
    problems: list[Problem] = []
    readable: list[tuple[CheckpointInfo, Manifest]] = []
    for info in infos:
        why = _invalid_name(info)
        if why is not None:
            problems.append(Problem(info.target, info.name, "invalid-name", why))
            continue
        manifest, found = _check_manifest(store, info)
        problems.extend(found)
        if manifest is not None:
            problems.extend(
                _check_presence(info.target, info.name, manifest, stored, store.sealing.overhead)
            )
            readable.append((info, manifest))
    blobs, bytes_read = len({d for _, m in readable for d in m.blob_digests}), 0
    read: list[str] = []
    seed = today() if seed is None else seed
    if read_data or subset is not None:
        only = None if subset is None else (lambda d: subset.selects(d, seed))
        with repo.tracking("verify") as callback:
            found_by_reading, read, bytes_read = _read_problems(
                store, readable, repo.jobs, only, callback
            )
        problems.extend(found_by_reading)
    untracked: tuple[tuple[str, str], ...] = ()
    if name is None:
        known = {(i.target, i.name) for i in repo.catalog.list(store.url, target)}
        known |= {(i.target, i.name) for i in repo.catalog.pending(store.url)}
        untracked = tuple(
            sorted(k for k in inventory.manifests if k not in known and target in (None, k[0]))
        )
    return VerifyReport(
        store_url=store.url,
        read_data=read_data or subset is not None,
        checkpoints=len(infos),
        blobs=blobs,
        bytes_read=bytes_read,
        problems=_dedupe(problems),
        untracked=untracked,
        subset=subset.describe(seed) if subset is not None else None,
        read=frozenset(read),
    )
