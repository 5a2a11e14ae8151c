"""Every long operation reports its progress through the repository's progress factory,
by phase (:data:`cryostash.transfer.progress.PHASES`), and ends it: the CRIU dump (no
count), ``import`` (archive bytes read), ``verify --read-data`` (plain bytes read),
``gc`` (manifests read, blobs deleted) and ``catalog rebuild`` (manifests read). The
CLI draws them on a terminal only (see also ``tests/test_progress.py``)."""

from __future__ import annotations

import io
from pathlib import Path

import blake3
from fsspec.implementations.local import LocalFileSystem

from cryostash import collect_garbage, rebuild_catalog, verify_store
from cryostash.config import Settings
from cryostash.operations.import_archive import ImportRequest, import_archive
from cryostash.transfer.progress import PHASES
from tests.support import cli
from tests.support.archives import checkpoint_archive, noise
from tests.support.fake_engine import FakeManager, make_image
from tests.support.stores import RawStore
from tests.support.terminal import on_terminal


class _Recorder:
    """A progress callback remembering its total, its count and whether it was ended."""

    def __init__(self) -> None:
        self.size: int | None = None
        self.value = 0
        self.closed = False

    def set_size(self, size: int | None) -> None:
        self.size = size

    def relative_update(self, inc: int = 1) -> None:
        assert not self.closed, "progress reported after its phase ended"
        self.value += inc

    def close(self) -> None:
        self.closed = True


class _Factory:
    """The progress factory: the recorders it made, by phase, in order."""

    def __init__(self) -> None:
        self.made: list[tuple[str, _Recorder]] = []

    def __call__(self, phase: str) -> _Recorder:
        assert phase in PHASES, f"phase {phase!r} is not in PHASES"
        self.made.append((phase, _Recorder()))
        return self.made[-1][1]

    def only(self, phase: str) -> _Recorder:
        found = [r for p, r in self.made if p == phase]
        assert len(found) == 1, f"{phase}: {len(found)} made"
        return found[0]

    def phases(self) -> list[str]:
        return [p for p, _ in self.made]


def _settings(tmp_path: Path, catalog: str = "catalog.db") -> Settings:
    return Settings(
        store_url=str(tmp_path / "store"),
        catalog_url=f"sqlite:///{tmp_path / catalog}",
        scratch_dir=tmp_path / "scratch",
        host="host-a",
    )


def test_dump_verify_gc_and_rebuild_report_their_progress(tmp_path: Path) -> None:
    factory = _Factory()
    with FakeManager(_settings(tmp_path), progress=factory) as mgr:
        for seed in (1, 2):
            make_image(tmp_path / f"img{seed}", seed=seed)
            mgr.create("app", f"cp{seed}", locator=str(tmp_path / f"img{seed}"))
        assert factory.phases() == ["dump", "upload", "dump", "upload"]
        dumps = [r for p, r in factory.made if p == "dump"]
        assert all(r.closed and r.size is None and r.value == 0 for r in dumps)

        factory.made.clear()
        assert verify_store(mgr.repository).ok  # without --read-data: nothing long
        assert factory.made == []
        report = verify_store(mgr.repository, read_data=True)
        read = factory.only("verify")
        assert report.ok and report.bytes_read > 0
        assert read.size == read.value == report.bytes_read and read.closed

        factory.made.clear()
        digest = blake3.blake3(b"nobody refers to me").hexdigest()
        raw = RawStore(LocalFileSystem(), str(tmp_path / "store"))
        raw.put(raw.blob(digest), b"nobody refers to me")
        gc = collect_garbage(mgr.repository, grace_s=0)
        assert gc.blobs_deleted == 1
        assert factory.phases() == ["gc-manifests", "gc-blobs"]
        manifests, blobs = factory.only("gc-manifests"), factory.only("gc-blobs")
        assert manifests.size == manifests.value == 2 and manifests.closed
        assert blobs.size == blobs.value == 1 and blobs.closed

    factory.made.clear()
    with FakeManager(_settings(tmp_path, "lost.db"), progress=factory) as mgr:
        rebuilt = rebuild_catalog(mgr.repository)
        assert len(rebuilt.imported) == 2
        manifests = factory.only("rebuild")
        assert manifests.size == manifests.value == 2 and manifests.closed


def test_import_reports_the_archive_bytes_read(tmp_path: Path) -> None:
    archive = tmp_path / "cp.tar"
    archive.write_bytes(checkpoint_archive(noise(3 << 20, 7)))
    factory = _Factory()
    with FakeManager(_settings(tmp_path), progress=factory) as mgr:
        import_archive(mgr.repository, ImportRequest("app", "cp", filename=str(archive)))
        read = factory.only("import")
        assert read.size == read.value == archive.stat().st_size and read.closed
        assert factory.phases() == ["import", "dump", "upload"]
        factory.made.clear()
        stream = io.BytesIO(archive.read_bytes())  # a stream (stdin): its size is unknown
        import_archive(mgr.repository, ImportRequest("app", "cp2"), stream)
        read = factory.only("import")
        assert read.size is None and read.value == archive.stat().st_size and read.closed


def test_the_cli_draws_maintenance_bars_on_a_terminal_only(tmp_path: Path) -> None:
    env = cli.base_env(
        CRYOSTASH_STORE=str(tmp_path / "store"),
        CRYOSTASH_CATALOG=f"sqlite:///{tmp_path / 'catalog.db'}",
        CRYOSTASH_SCRATCH=str(tmp_path / "scratch"),
        CRYOSTASH_CACHE="none",
    )
    archive = tmp_path / "cp.tar"
    archive.write_bytes(checkpoint_archive(noise(3 << 20, 7)))
    verbs: list[tuple[list[str], bytes]] = [
        (["import", "app", "cp1", str(archive)], b"import"),
        (["verify", "--read-data"], b"verify"),
        (["gc", "--grace", "0"], b"gc: manifests read"),
    ]
    for args, label in verbs:
        code, _, seen = on_terminal(args, env)
        assert code == 0, seen
        assert label in seen, (args, seen)
    lost = {**env, "CRYOSTASH_CATALOG": f"sqlite:///{tmp_path / 'lost.db'}"}
    code, _, seen = on_terminal(["catalog", "rebuild"], lost)
    assert code == 0 and b"rebuild: manifests read" in seen, seen

    # Not a terminal (piped), or --json: not a byte of a bar.
    (tmp_path / "lost.db").unlink()
    piped = [
        (["import", "app", "cp2", str(archive)], env),
        (["verify", "--read-data"], env),
        (["gc", "--grace", "0"], env),
        (["catalog", "rebuild"], lost),
    ]
    for args, where in piped:
        assert cli.run(args, where).stderr == "", args
    for args, label in verbs[1:]:
        code, _, seen = on_terminal([*args, "--json"], env)
        assert code == 0 and label not in seen and b"\r" not in seen, (args, seen)
