"""S3 specifics (s3fs): default timeouts and retries, streamed reads, multipart uploads.

Imported only when a store on ``s3://`` is opened or used.

- :func:`with_defaults` bounds every request: botocore connect and read timeouts and a
  small number of attempts (``standard`` retry mode), unless the user's own
  ``config_kwargs`` storage option says otherwise, key by key. An unreachable endpoint
  therefore fails within seconds instead of minutes.
- :func:`iter_object` streams one ``GET`` (no ranged re-reads: one request per object,
  memory bounded by the chunk size).
- :class:`MultipartUpload` puts parts of one object concurrently from several threads;
  the object appears only when the upload is completed, and :meth:`MultipartUpload.abort`
  discards the parts (nothing half-written stays behind).

Everything here raises backend exceptions untranslated; the :class:`~cryostash.storage.Store`
translates them in one place.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Mapping
from typing import Any

#: botocore ``Config`` values applied unless the ``config_kwargs`` storage option sets them.
#: Connection refused or timed out: 3 attempts in all (botocore's ``standard`` mode backs
#: off up to 1 s, then 2 s), so an unreachable endpoint fails within about 20 s at worst.
DEFAULT_CONFIG: Mapping[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 60,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
    "max_pool_connections": 32,
}


def with_defaults(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for ``s3fs.S3FileSystem`` with :data:`DEFAULT_CONFIG` filled in.

    The user's ``config_kwargs`` win key by key (``{"retries": {"total_max_attempts":
    10}}`` replaces only the retry policy).
    """
    merged = dict(options)
    config = copy.deepcopy(dict(DEFAULT_CONFIG))  # botocore edits ``retries`` in place
    config.update(copy.deepcopy(dict(merged.get("config_kwargs") or {})))
    merged["config_kwargs"] = config
    return merged


def _split(fs: Any, path: str) -> tuple[str, str]:
    bucket, key, _ = fs.split_path(path)
    return str(bucket), str(key)


async def _close(body: Any) -> None:
    body.close()


def iter_object(fs: Any, path: str, chunk_size: int) -> Iterator[bytes]:
    """Yield the bytes of the object at ``path`` from one streamed ``GET``.

    Safe to call from any thread (the requests run on fsspec's I/O loop). A truncated
    body raises (botocore checks the length); a missing object raises FileNotFoundError.
    """
    from fsspec.asyn import sync

    bucket, key = _split(fs, path)
    resp = sync(fs.loop, fs._call_s3, "get_object", Bucket=bucket, Key=key, **fs.req_kw)
    body = resp["Body"]
    try:
        while True:
            block = sync(fs.loop, body.read, chunk_size)
            if not block:
                return
            yield bytes(block)
    finally:
        sync(fs.loop, _close, body)


class MultipartUpload:
    """One S3 multipart upload of the object at ``path``.

    Thread-safe: :meth:`put_part` may be called from several threads at once. Parts are
    numbered from 1; every part but the last must be at least 5 MiB (S3's rule). The object
    appears atomically at :meth:`complete`; after :meth:`abort` nothing of it remains.
    """

    def __init__(self, fs: Any, path: str) -> None:
        self._fs = fs
        self._bucket, self._key = _split(fs, path)
        self._etags: dict[int, str] = {}
        self._lock = threading.Lock()
        resp = fs.call_s3("create_multipart_upload", Bucket=self._bucket, Key=self._key)
        self._upload_id: str = resp["UploadId"]

    def put_part(self, number: int, data: bytes) -> None:
        """Upload part ``number`` (1-based). Putting the same number again replaces it."""
        resp = self._fs.call_s3(
            "upload_part",
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
        )
        with self._lock:
            self._etags[number] = resp["ETag"]

    def complete(self) -> None:
        """Assemble the parts into the object (it becomes visible now)."""
        with self._lock:
            parts = [{"PartNumber": n, "ETag": e} for n, e in sorted(self._etags.items())]
        self._fs.call_s3(
            "complete_multipart_upload",
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )

    def abort(self) -> None:
        """Discard the uploaded parts (the object was never created by this upload)."""
        self._fs.call_s3(
            "abort_multipart_upload",
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
        )
