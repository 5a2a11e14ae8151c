"""A fault-injecting fsspec file system for tests (after kopia's ``blobtesting/faulty.go``).

``faulty::<inner URL>`` (``faulty::file:///srv/x``, ``faulty::s3://bucket/root``) wraps
any fsspec file system. Every call passes through to the inner one unless a
:class:`Fault` of the file system's :class:`FaultPlan` matches it; a matching fault may

- run a callback before the call (``before``: e.g. kill a process, run gc meanwhile),
- sleep (``sleep``: a slow call; with ``error=TimeoutError`` a timed-out one),
- write only the first N bytes of a ``pipe_file``/``put_file`` (``partial``: a torn
  write, as a non-atomic backend could leave),
- raise an error instead of the call (``error``),

on every matching call, only after the first ``after`` ones, on every ``every``-th one
(a share of the calls), at most ``times`` times; counting overall or per (op, path)
(``per_path``: deterministic with parallel transfers). Reads of an opened file are
the op ``read``, so a stream can fail in its middle.

Usage (in-process only; the plan is a Python object)::

    plan = FaultPlan([fail("put_file", every=2, per_path=True)])
    store = Store(f"faulty::file://{root}", {"plan": plan})
    store = Store("faulty::s3://bucket/root", {"plan": plan, "s3": moto_options})

Importing this module registers the ``faulty`` protocol with fsspec.
"""

from __future__ import annotations

import errno
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import fsspec
from fsspec.implementations.chained import ChainedFileSystem

ErrorFactory = Callable[[str, str], BaseException]
#: Ops that write bytes (``partial`` applies to them).
WRITES = frozenset({"pipe_file", "put_file"})


@dataclass
class Fault:
    """One rule of a :class:`FaultPlan` (see the module docstring).

    Attributes:
        ops: method names it applies to (``put_file``, ``pipe_file``, ``cat_file``,
            ``open``, ``read``, ``info``, ``find``, ``rm_file``...), or ``*`` for all.
        path: a regular expression searched in the call's path; None matches all.
        error: builds the exception raised instead of the call, from (op, path).
        times: fire at most this many times (None: no limit), per path with ``per_path``.
        after: let this many matching calls through before the first firing.
        every: fire on every N-th matching call after those.
        per_path: count calls (and firings) per (op, path) instead of overall.
        sleep: seconds to sleep before the call (or before raising).
        partial: for writes, store only the first N bytes (before raising ``error``).
        before: called with (op, path) before the call, when the fault fires.
    """

    ops: frozenset[str]
    path: str | None = None
    error: ErrorFactory | None = None
    times: int | None = None
    after: int = 0
    every: int = 1
    per_path: bool = False
    sleep: float = 0.0
    partial: int | None = None
    before: Callable[[str, str], None] | None = None
    fired: int = 0
    _seen: Counter[str] = field(default_factory=Counter, repr=False)
    _fired: Counter[str] = field(default_factory=Counter, repr=False)

    def matches(self, op: str, path: str) -> bool:
        """True if this fault applies to the call (whether or not it fires)."""
        if "*" not in self.ops and op not in self.ops:
            return False
        return self.path is None or re.search(self.path, path) is not None

    def should_fire(self, op: str, path: str) -> bool:
        """Count one matching call; True if the fault fires on it."""
        key = f"{op} {path}" if self.per_path else ""
        self._seen[key] += 1
        n = self._seen[key] - self.after
        if n <= 0 or (n - 1) % self.every != 0:
            return False
        if self.times is not None and self._fired[key] >= self.times:
            return False
        self._fired[key] += 1
        self.fired += 1
        return True


class FaultPlan:
    """The faults of one test, and a log of every call the layer saw. Thread-safe."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self.faults: list[Fault] = list(faults)
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        """Add ``fault`` (checked after the ones already there); return it."""
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault (the call log stays)."""
        with self._lock:
            self.faults.clear()

    def fire(self, op: str, path: str) -> Fault | None:
        """Log the call; return the first matching fault that fires on it (after running
        its ``before`` callback and sleep), or None."""
        with self._lock:
            self.calls.append((op, path))
            chosen = next(
                (f for f in self.faults if f.matches(op, path) and f.should_fire(op, path)), None
            )
        if chosen is not None:
            if chosen.before is not None:
                chosen.before(op, path)
            if chosen.sleep:
                time.sleep(chosen.sleep)
        return chosen

    def count(self, op: str, path: str | None = None) -> int:
        """How many calls of ``op`` were seen (on paths matching the regex ``path``)."""
        with self._lock:
            return sum(
                1 for o, p in self.calls if o == op and (path is None or re.search(path, p))
            )


def _ops(ops: str | Iterable[str]) -> frozenset[str]:
    return frozenset([ops] if isinstance(ops, str) else ops)


def fail(ops: str | Iterable[str], *, transient: bool = True, **kw: Any) -> Fault:
    """A fault raising ``ConnectionResetError`` (transient) or ``PermissionError`` (not)."""

    def error(op: str, path: str) -> BaseException:
        if transient:
            return ConnectionResetError(errno.ECONNRESET, f"injected reset of {op}", path)
        return PermissionError(errno.EACCES, f"injected permanent failure of {op}", path)

    return Fault(_ops(ops), error=error, **kw)


def timeout(ops: str | Iterable[str], seconds: float, **kw: Any) -> Fault:
    """A call that hangs for ``seconds`` and then times out (``TimeoutError``)."""

    def error(op: str, path: str) -> BaseException:
        return TimeoutError(errno.ETIMEDOUT, f"injected timeout of {op}", path)

    return Fault(_ops(ops), error=error, sleep=seconds, **kw)


def torn(ops: str | Iterable[str], keep: int, **kw: Any) -> Fault:
    """A write that stores only its first ``keep`` bytes, then fails transiently."""
    return fail(ops, partial=keep, **kw)


def hook(ops: str | Iterable[str], callback: Callable[[str, str], None], **kw: Any) -> Fault:
    """Run ``callback(op, path)`` before matching calls (which then proceed)."""
    return Fault(_ops(ops), before=callback, **kw)


class _FaultyFile:
    """A file object whose reads pass through the plan (op ``read``)."""

    def __init__(self, inner: Any, plan: FaultPlan, path: str) -> None:
        self._inner, self._plan, self._path = inner, plan, path

    def read(self, *args: Any) -> Any:
        fault = self._plan.fire("read", self._path)
        if fault is not None and fault.error is not None:
            raise fault.error("read", self._path)
        return self._inner.read(*args)

    def __enter__(self) -> _FaultyFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FaultyFileSystem(ChainedFileSystem):
    """Pass-through file system that consults a :class:`FaultPlan` before each call."""

    protocol = "faulty"
    cachable = False

    def __init__(
        self,
        target_protocol: str | None = None,
        target_options: dict[str, Any] | None = None,
        fs: Any = None,
        plan: FaultPlan | None = None,
        fo: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inner = fs if fs is not None else fsspec.filesystem(
            target_protocol or "file", **(target_options or {})
        )
        self.plan = plan if plan is not None else FaultPlan()

    def _call(self, op: str, path: Any, *args: Any, **kwargs: Any) -> Any:
        fault = self.plan.fire(op, str(path))
        if fault is not None and fault.error is not None:
            raise fault.error(op, str(path))
        return getattr(self.inner, op)(path, *args, **kwargs)

    def _write(self, op: str, path: str, data: bytes, call: Callable[[], Any]) -> Any:
        fault = self.plan.fire(op, path)
        if fault is not None:
            if fault.partial is not None:
                self.inner.pipe_file(path, data[: fault.partial])
            if fault.error is not None:
                raise fault.error(op, path)
            if fault.partial is not None:
                return None  # a silently torn write
        return call()

    # -- writes --------------------------------------------------------------------
    def pipe_file(self, path: str, value: bytes, **kwargs: Any) -> Any:
        def call() -> Any:
            return self.inner.pipe_file(path, value, **kwargs)

        return self._write("pipe_file", path, value, call)

    def put_file(self, lpath: str, rpath: str, **kwargs: Any) -> Any:
        with open(lpath, "rb") as fh:
            data = fh.read()

        def call() -> Any:
            return self.inner.put_file(lpath, rpath, **kwargs)

        return self._write("put_file", rpath, data, call)

    # -- everything else the store uses ----------------------------------------------
    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        inner = self._call("open", path, mode, **kwargs)
        return _FaultyFile(inner, self.plan, str(path)) if "r" in mode else inner

    def cat_file(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("cat_file", path, *args, **kwargs)

    def info(self, path: str, **kwargs: Any) -> Any:
        return self._call("info", path, **kwargs)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> Any:
        return self._call("ls", path, detail=detail, **kwargs)

    def find(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("find", path, *args, **kwargs)

    def exists(self, path: str, **kwargs: Any) -> Any:
        return self._call("exists", path, **kwargs)

    def isfile(self, path: str) -> Any:
        return self._call("isfile", path)

    def isdir(self, path: str) -> Any:
        return self._call("isdir", path)

    def size(self, path: str) -> Any:
        return self._call("size", path)

    def rm_file(self, path: str) -> Any:
        return self._call("rm_file", path)

    def rm(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("rm", path, *args, **kwargs)

    def makedirs(self, path: str, exist_ok: bool = False) -> Any:
        return self._call("makedirs", path, exist_ok=exist_ok)

    def mkdir(self, path: str, *args: Any, **kwargs: Any) -> Any:
        return self._call("mkdir", path, *args, **kwargs)

    def rmdir(self, path: str) -> Any:
        return self._call("rmdir", path)

    def invalidate_cache(self, path: str | None = None) -> None:
        self.inner.invalidate_cache(path)


fsspec.register_implementation("faulty", FaultyFileSystem, clobber=True)
