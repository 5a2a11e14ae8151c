"""What a CRIU image folder holds, read with pycriu (:mod:`cryostash.engines.criu_reader`):
the process tree, each process's open files, sockets and pipes, and its memory mappings.

Only small image files are read: ``pstree``, ``core-*``, ``ids-*``, ``fdinfo-*``,
``files``, ``fs-*``, ``mm-*``, ``pagemap-*`` (and the per-type images an older CRIU
writes beside ``files.img``), as :data:`NEEDED` lists them; never ``pages-*.img``.
Every value read from an image is checked for its type: a malformed image gives an
:class:`~cryostash.errors.IntegrityError` naming the file.

A task's state is its core image's ``tc.task_state`` (:data:`TASK_STATES`): CRIU dumps a
zombie (an exited child its parent has not reaped) as ``Dead``, with a core image and
nothing else: it has no descriptors, memory or threads to read; a stopped task
(``SIGSTOP``) is dumped whole and shown ``Stopped``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryostash.engines.criu_reader import load_image
from cryostash.errors import IntegrityError

#: The CRIU image files read here (never ``pages-*.img``, the memory's contents).
NEEDED = re.compile(
    r"(pstree|inventory|files|(core|ids|fdinfo|fs|mm|pagemap)-\d+|reg-files|pipes|fifo|inetsk"
    r"|unixsk|packetsk|netlinksk|eventfd|eventpoll|signalfd|timerfd|inotify|tunfile|memfd)\.img"
)
#: The page size of the images' pagemaps (x86-64 and most arm64 kernels).
PAGE_SIZE = 4096
#: pagemap entry flag: the pages are in this image's pages file.
PE_PRESENT = 1 << 2
#: CRIU's task states (compel's ``enum __compel_task_state``), named as checkpointctl names
#: them; a zombie is dumped as ``Dead``.
TASK_STATES = {1: "Alive", 2: "Dead", 3: "Stopped", 6: "Zombie"}
_SOCKETS = {"INETSK": "tcp/udp", "UNIXSK": "unix", "PACKETSK": "packet", "NETLINKSK": "netlink"}
# The field of a files.img entry that holds each type's details (images/fdinfo.proto).
_FIELDS = {
    "REG": ("reg", "reg-files.img"), "PIPE": ("pipe", "pipes.img"),
    "FIFO": ("fifo", "fifo.img"), "INETSK": ("isk", "inetsk.img"),
    "UNIXSK": ("usk", "unixsk.img"), "PACKETSK": ("psk", "packetsk.img"),
    "NETLINKSK": ("nlsk", "netlinksk.img"), "EVENTFD": ("efd", "eventfd.img"),
    "EVENTPOLL": ("epfd", "eventpoll.img"), "SIGNALFD": ("sgfd", "signalfd.img"),
    "TIMERFD": ("tfd", "timerfd.img"), "INOTIFY": ("ify", "inotify.img"),
    "TUNF": ("tunf", "tunfile.img"), "MEMFD": ("memfd", "memfd.img"),
}


@dataclass(frozen=True)
class Thread:
    tid: int
    comm: str


@dataclass(frozen=True)
class Process:
    """One task of the tree: ``comm`` is the kernel's command name (16 bytes at most);
    ``state`` a :data:`TASK_STATES` name (``Alive``, ``Dead``, ``Stopped``, ``Zombie``, or
    ``state N`` for a number CRIU may add later)."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    state: str
    threads: tuple[Thread, ...]

    @property
    def has_resources(self) -> bool:
        """True unless it is dead: only live and stopped tasks have files and memory."""
        return self.state in ("Alive", "Stopped")


@dataclass(frozen=True)
class OpenFile:
    """One descriptor of a process (``fd`` is a number, or ``cwd``/``root``/``exe``).

    ``kind`` is ``file``, ``socket``, ``pipe`` or ``other``; ``detail`` the readable fields
    (path, flags, position; family, protocol, state, local and remote addresses; pipe id).
    """

    pid: int
    fd: str
    kind: str
    type: str
    name: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class MemoryMapping:
    start: int
    end: int
    prot: str
    shared: bool
    name: str
    dumped: int

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ProcessMemory:
    """A process's mappings and the pages file (``pages-N.img``) holding its dumped pages."""

    pid: int
    pages_file: str | None
    mappings: tuple[MemoryMapping, ...]
    #: The command line's and the environment's address ranges (``mm_arg_*``, ``mm_env_*``).
    args: tuple[int, int] = (0, 0)
    env: tuple[int, int] = (0, 0)
    #: The dumped ranges: (start, end, offset of ``start`` in the pages file).
    present: tuple[tuple[int, int, int], ...] = ()

    def file_spans(self, span: tuple[int, int]) -> list[tuple[int, int]]:
        """(offset, length) in the pages file of the bytes of ``span`` that were dumped."""
        start, end = span
        out = []
        for a, b, offset in self.present:
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                out.append((offset + lo - a, hi - lo))
        return out

    @property
    def mapped(self) -> int:
        return sum(m.size for m in self.mappings)

    @property
    def dumped(self) -> int:
        return sum(m.dumped for m in self.mappings)


@dataclass(frozen=True)
class Contents:
    processes: tuple[Process, ...]
    files: tuple[OpenFile, ...]
    memory: tuple[ProcessMemory, ...]

    def tree_dict(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.processes]

    def files_dict(self) -> list[dict[str, Any]]:
        return [{**asdict(f), "detail": dict(f.detail)} for f in self.files]

    def memory_dict(self) -> list[dict[str, Any]]:
        return [
            {
                "pid": m.pid, "pages_file": m.pages_file, "mapped_bytes": m.mapped,
                "dumped_bytes": m.dumped,
                "mappings": [{**asdict(v), "size": v.size} for v in m.mappings],
            }
            for m in self.memory
        ]


def _int(entry: Mapping[str, Any], key: str, image: str, default: int | None = None) -> int:
    value = entry.get(key, default)
    if isinstance(value, str):  # pycriu's pretty form of some numbers is hex
        try:
            value = int(value, 0)
        except ValueError:
            value = None
    if not isinstance(value, int) or isinstance(value, bool):
        raise IntegrityError(f"CRIU image {image} is malformed: {key} is {value!r}")
    return value


def _dict(value: object, what: str, image: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise IntegrityError(f"CRIU image {image} is malformed: no {what}")
    return value


def _one(folder: Path, image: str, pretty: bool = False) -> dict[str, Any]:
    entries = load_image(folder / image, pretty=pretty)
    if not entries:
        raise IntegrityError(f"CRIU image {image} is malformed: it is empty")
    return entries[0]


def read_contents(folder: Path) -> Contents:
    """The process tree, open files and memory of the CRIU images in ``folder``.

    Raises:
        IntegrityError: an image is missing or malformed (named).
        EngineError: pycriu is not installed.
    """
    tree = load_image(folder / "pstree.img")
    files = _FileTable(folder)
    processes, opened, memory = [], [], []
    for entry in tree:
        pid = _int(entry, "pid", "pstree.img")
        threads = entry.get("threads") or [pid]
        if not isinstance(threads, list):
            raise IntegrityError("CRIU image pstree.img is malformed: threads")
        core = _one(folder, f"core-{pid}.img")
        tc = _dict(core.get("tc"), "tc", f"core-{pid}.img")
        state = _int(tc, "task_state", f"core-{pid}.img", 1)
        process = Process(
            pid, _int(entry, "ppid", "pstree.img", 0), _int(entry, "pgid", "pstree.img", 0),
            _int(entry, "sid", "pstree.img", 0), str(tc.get("comm", "")),
            TASK_STATES.get(state, f"state {state}"), (),
        )
        if not process.has_resources:  # a zombie: its core image is all there is
            processes.append(process)
            continue
        named = tuple(Thread(_int({"t": t}, "t", "pstree.img"), _comm(folder, t)) for t in threads)
        processes.append(replace(process, threads=named))
        opened.extend(_open_files(folder, pid, files))
        memory.append(_memory(folder, pid, files))
    return Contents(tuple(processes), tuple(opened), tuple(memory))


def _comm(folder: Path, tid: int) -> str:
    core = _one(folder, f"core-{tid}.img")
    thread = core.get("thread_core")
    if isinstance(thread, dict) and isinstance(thread.get("comm"), str):
        return str(thread["comm"])
    tc = core.get("tc")
    return str(tc.get("comm", "")) if isinstance(tc, dict) else ""


class _FileTable:
    """``files.img`` by id (with the per-type images of older CRIUs as a fallback)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_id: dict[tuple[str, int], dict[str, Any]] = {}
        if (folder / "files.img").exists():
            for entry in load_image(folder / "files.img", pretty=True):
                kind = str(entry.get("type", ""))
                field = _FIELDS.get(kind, ("", ""))[0]
                body = entry.get(field) if field else entry
                if isinstance(body, dict):
                    self.by_id[(kind, _int(entry, "id", "files.img"))] = body
        for kind, (_, image) in _FIELDS.items():
            if (folder / image).exists():
                for body in load_image(folder / image, pretty=True):
                    self.by_id.setdefault((kind, _int(body, "id", image)), body)

    def describe(self, kind: str, fid: int) -> tuple[str, str, dict[str, Any]]:
        """(kind, name, detail) of the file ``fid`` of type ``kind``."""
        body = self.by_id.get((kind, fid), {})
        if kind == "REG":
            name = str(body.get("name", "?"))
            detail: dict[str, Any] = {k: body[k] for k in ("flags", "pos", "size") if k in body}
            return "file", name, {"path": name, **detail}
        if kind in ("PIPE", "FIFO"):
            pipe = body.get("pipe_id", "?")
            return "pipe", f"{kind.lower()}:[{pipe}]", {"pipe_id": pipe}
        if kind in _SOCKETS:
            return "socket", *_socket(kind, body)
        return "other", kind.lower(), {}


def _addr(value: object, port: object) -> str:
    host = value[0] if isinstance(value, list) and value else value
    host = str(host) if host is not None else "?"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _socket(kind: str, body: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if kind == "INETSK":
        proto = str(body.get("proto", "?")).lower()
        state = str(body.get("state", "?"))
        local = _addr(body.get("src_addr"), body.get("src_port", "?"))
        detail: dict[str, Any] = {
            "family": str(body.get("family", "?")).lower(), "protocol": proto,
            "state": state, "local": local,
        }
        detail.update(_buffers(body))
        name = f"{proto} {local} {state}"
        if state != "LISTEN":
            detail["remote"] = _addr(body.get("dst_addr"), body.get("dst_port", "?"))
            name = f"{proto} {local} -> {detail['remote']} {state}"
        return name, detail
    if kind == "UNIXSK":
        path = body.get("name")
        state = str(body.get("state", "?"))
        detail = {"family": "unix", "state": state, "path": str(path or ""), **_buffers(body)}
        return f"unix {path or '(unnamed)'} {state}", detail
    return _SOCKETS[kind], {"family": _SOCKETS[kind]}


def _buffers(body: Mapping[str, Any]) -> dict[str, int]:
    """A socket's send and receive buffer sizes (``SO_SNDBUF``/``SO_RCVBUF``, bytes)."""
    opts = body.get("opts")
    out = {}
    if isinstance(opts, dict):
        for key, name in (("so_sndbuf", "send_buffer"), ("so_rcvbuf", "receive_buffer")):
            if isinstance(opts.get(key), int):
                out[name] = int(opts[key])
    return out


def _open_files(folder: Path, pid: int, files: _FileTable) -> list[OpenFile]:
    ids = _one(folder, f"ids-{pid}.img")
    table = _int(ids, "files_id", f"ids-{pid}.img")
    out = []
    for fd in load_image(folder / f"fdinfo-{table}.img"):
        kind, fid = str(fd.get("type", "?")), _int(fd, "id", f"fdinfo-{table}.img")
        what, name, detail = files.describe(kind, fid)
        out.append(OpenFile(pid, str(_int(fd, "fd", f"fdinfo-{table}.img")), what, kind, name,
                            detail))
    if (folder / f"fs-{pid}.img").exists():
        fs = _one(folder, f"fs-{pid}.img")
        for label, key in (("cwd", "cwd_id"), ("root", "root_id")):
            _, name, detail = files.describe("REG", _int(fs, key, f"fs-{pid}.img"))
            out.append(OpenFile(pid, label, "file", "REG", name, {"path": name}))
    return out


def _prot(value: int) -> str:
    return "".join(c if value & bit else "-" for c, bit in (("r", 1), ("w", 2), ("x", 4)))


def _memory(folder: Path, pid: int, files: _FileTable) -> ProcessMemory:
    image = f"mm-{pid}.img"
    mm = _one(folder, image)
    vmas = mm.get("vmas") or []
    if not isinstance(vmas, list):
        raise IntegrityError(f"CRIU image {image} is malformed: vmas")
    present: list[tuple[int, int, int]] = []
    pages_file, offset = None, 0
    if (folder / f"pagemap-{pid}.img").exists():
        pagemap = load_image(folder / f"pagemap-{pid}.img")
        if pagemap and "pages_id" in pagemap[0]:
            pages_file = f"pages-{_int(pagemap[0], 'pages_id', f'pagemap-{pid}.img')}.img"
        for pm in pagemap[1:]:
            if _int(pm, "flags", f"pagemap-{pid}.img", PE_PRESENT) & PE_PRESENT:
                start = _int(pm, "vaddr", f"pagemap-{pid}.img")
                size = PAGE_SIZE * _int(pm, "nr_pages", f"pagemap-{pid}.img")
                present.append((start, start + size, offset))
                offset += size
    maps = []
    for vma in vmas:
        vma = _dict(vma, "vma", image)
        start, end = _int(vma, "start", image), _int(vma, "end", image)
        status, shmid = _int(vma, "status", image, 0), _int(vma, "shmid", image, 0)
        dumped = sum(max(0, min(end, b) - max(start, a)) for a, b, _ in present)
        maps.append(
            MemoryMapping(start, end, _prot(_int(vma, "prot", image, 0)),
                          bool(status & (1 << 7 | 1 << 8)), _vma_name(status, shmid, files),
                          dumped)
        )
    args = (_int(mm, "mm_arg_start", image, 0), _int(mm, "mm_arg_end", image, 0))
    env = (_int(mm, "mm_env_start", image, 0), _int(mm, "mm_env_end", image, 0))
    return ProcessMemory(pid, pages_file, tuple(maps), args, env, tuple(present))


def _vma_name(status: int, shmid: int, files: _FileTable) -> str:
    """What a mapping maps (images/vma.proto status bits, as crit names them)."""
    if status & (1 << 6 | 1 << 7):
        return files.describe("REG", shmid)[1]
    for bit, name in ((1, "[stack]"), (2, "[vsyscall]"), (3, "[vdso]"), (5, "[heap]"),
                      (10, "[sysvipc]"), (11, "[packet]"), (12, "[vvar]"), (13, "[aio]"),
                      (14, "[memfd]"), (8, "[shmem]")):
        if status & (1 << bit):
            return name
    return "[anon]"
