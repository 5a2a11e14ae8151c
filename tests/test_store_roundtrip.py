"""Property tests (hypothesis) of the store round trip on every backend (memory, local,
S3 on moto): whatever the bytes and sizes of the files of an image, pack -> manifest
-> unpack gives them back exactly.

Sizes cluster around every boundary of the data path: 0 and 1 byte, the chunker's
minimum, average and maximum chunk sizes (small parameters, so that boundaries are
cheap to reach), the all-zero runs the chunker recognises, and the 1 MiB read block.
Contents are random, all zeros, or a short repeated pattern (compressible), stored
compressed or raw. Examples are derandomised: every run tries the same ones.
"""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryostash.store import Manifest
from cryostash.transfer.chunking import ChunkParams
from cryostash.transfer.pack import pack
from cryostash.transfer.unpack import unpack
from tests.support.stores import Backend

PARAMS = ChunkParams(256)  # chunks of 64 B .. 1 KiB
BLOCK = 1 << 20
EDGES = sorted(
    {0, 1, 2, BLOCK - 1, BLOCK, BLOCK + 1}
    | {n + d for n in (PARAMS.min, PARAMS.avg, PARAMS.max, 2 * PARAMS.max) for d in (-1, 0, 1)}
)
SIZES = st.one_of(st.sampled_from(EDGES), st.integers(min_value=0, max_value=20_000))
KINDS = st.sampled_from(["random", "zeros", "pattern"])
FILES = st.lists(st.tuples(SIZES, KINDS, st.integers(0, 2**32)), min_size=1, max_size=4)
#: Examples per backend (S3 on moto is slow: fewer there).
EXAMPLES = {"memory": 15, "local": 30, "s3": 12}
_names = itertools.count()


def _content(size: int, kind: str, seed: int) -> bytes:
    if kind == "zeros":
        return bytes(size)
    if kind == "pattern":
        return (b"cryostash-%d;" % (seed % 97) * (size // 12 + 1))[:size]
    return random.Random(seed).randbytes(size)


def test_any_image_round_trips_through_the_store(backend: Backend) -> None:
    store = backend.store()

    @settings(
        max_examples=EXAMPLES[backend.name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(files=FILES, level=st.sampled_from([None, 3]), mode=st.sampled_from([0o600, 0o644]))
    def round_trip(files: list[tuple[int, str, int]], level: int | None, mode: int) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            src, dest = Path(tmp, "src"), Path(tmp, "dest")
            expected: dict[str, bytes] = {}
            for i, (size, kind, seed) in enumerate(files):
                rel = f"d{i % 2}/f{i}.img" if i % 3 else f"f{i}.img"
                expected[rel] = _content(size, kind, seed)
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                (src / rel).write_bytes(expected[rel])
                (src / rel).chmod(mode)
            packed = pack(store, src, params=PARAMS, level=level, jobs=3)
            name = f"cp{next(_names)}"
            manifest = Manifest(
                target="prop", name=name, engine="fake", engine_version=None, host="h",
                kernel="k", created_at=__import__("datetime").datetime.now(),
                files=packed.entries,
            )
            store.manifests.write("prop", name, manifest.to_bytes())
            again = Manifest.from_bytes(store.manifests.read("prop", name), target="prop",
                                        name=name)
            assert again == manifest
            unpack(store, again.files, dest, jobs=3)
            got = {
                p.relative_to(dest).as_posix(): p.read_bytes()
                for p in dest.rglob("*")
                if p.is_file()
            }
            assert got == expected
            assert all((dest / rel).stat().st_mode & 0o777 == mode for rel in expected)

    round_trip()
