"""What ``inspect --tree/--files/--memory`` and ``diff`` print for people (text).

Every name read from an image (commands, paths, socket names) is untrusted: it goes
through :func:`~cryostash.cli.present.say`, which escapes control characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryostash.cli.present import say
from cryostash.units import format_size


def _pid(p: Mapping[str, Any]) -> str:
    """The PID, with the task's state when it is not ``Alive`` (``42 (Dead)``, a zombie;
    ``43 (Stopped)``), as checkpointctl shows it."""
    state = p.get("state", "Alive")
    return str(p["pid"]) if state == "Alive" else f"{p['pid']} ({state})"


def show_tree(processes: Sequence[Mapping[str, Any]]) -> None:
    """The process tree: PID (and state unless alive), parent, threads, command (children
    indented under parents)."""
    say(f"{'PID':<15}{'PPID':<9}{'THREADS':<9}COMMAND")
    by_parent: dict[int, list[Mapping[str, Any]]] = {}
    pids = {p["pid"] for p in processes}
    for p in processes:
        by_parent.setdefault(p["ppid"] if p["ppid"] in pids else 0, []).append(p)

    def walk(parent: int, depth: int) -> None:
        for p in by_parent.get(parent, []):
            threads = p["threads"]
            indent = "  " * depth
            command = " ".join(p["cmdline"]) if p.get("cmdline") else p["comm"]
            say(f"{_pid(p):<15}{p['ppid']:<9}{len(threads):<9}{indent}{command}")
            for variable in p.get("env", ()):
                say(f"{'':<33}{indent}  env {variable}")
            for t in threads:
                if t["tid"] != p["pid"]:
                    say(f"{'':<33}{indent}  thread {t['tid']} {t['comm']}")
            if p["pid"] != parent:
                walk(p["pid"], depth + 1)

    walk(0, 0)


def _file_line(f: Mapping[str, Any]) -> str:
    detail = f["detail"]
    extra = []
    if f["kind"] == "file" and detail.get("flags") is not None:
        extra.append(str(detail["flags"]) or "O_RDONLY")
    if f["kind"] == "file" and "pos" in detail:
        extra.append(f"pos {detail['pos']}")
    if "send_buffer" in detail:
        receive = detail.get("receive_buffer", "?")
        extra.append(f"send buffer {detail['send_buffer']}, receive {receive}")
    tail = f" ({', '.join(extra)})" if extra else ""
    return f"{f['pid']:<9}{f['fd']:<6}{f['kind']:<8}{f['name']}{tail}"


def show_files(files: Sequence[Mapping[str, Any]]) -> None:
    """Open descriptors: files (flags, position), sockets (addresses, state), pipes."""
    say(f"{'PID':<9}{'FD':<6}{'KIND':<8}WHAT")
    for f in files:
        say(_file_line(f))


def show_memory(memory: Sequence[Mapping[str, Any]]) -> None:
    """Per process: its mappings (address range, size, bytes dumped, protection, what)."""
    for m in memory:
        maps = m["mappings"]
        say(
            f"PID {m['pid']}: {len(maps)} mappings, {format_size(m['mapped_bytes'])} mapped, "
            f"{format_size(m['dumped_bytes'])} dumped"
            + (f" ({m['pages_file']})" if m["pages_file"] else "")
        )
        say(f"  {'START':<18}{'END':<18}{'SIZE':>11}{'DUMPED':>11}  PROT NAME")
        for v in maps:
            say(
                f"  {v['start']:<18x}{v['end']:<18x}{format_size(v['size']):>11}"
                f"{format_size(v['dumped']):>11}  {v['prot']:<5}{v['name']}"
            )


def _section(title: str, diff: Mapping[str, Sequence[Any]], line: Any) -> None:
    if not any(diff.values()):
        say(f"{title}: unchanged")
        return
    say(f"{title}:")
    for item in diff["added"]:
        say(f"  + {line(item)}")
    for item in diff["removed"]:
        say(f"  - {line(item)}")
    for item in diff["changed"]:
        say(f"  ~ {line(item['a'])}")
        say(f"    {line(item['b'])}")


def _process_line(p: Mapping[str, Any]) -> str:
    return f"{_pid(p)} {p['comm']} (parent {p['ppid']}, {len(p['threads'])} threads)"


def show_diff(diff: Mapping[str, Any]) -> None:
    """What ``diff`` found, section by section."""
    say(f"{diff['target']}: {diff['a']} -> {diff['b']}")
    _section("processes", diff["processes"], _process_line)
    _section("files", diff["files"], _file_line)
    _section("sockets", diff["sockets"], _file_line)
    mem = diff["memory"]
    if "memory" not in diff["changed"]:
        say(f"memory: unchanged ({format_size(mem['bytes_b'])} of pages)")
        return
    say(
        f"memory: {mem['bytes_differ']} bytes differ ({format_size(mem['bytes_differ'])} "
        f"of {format_size(mem['bytes_b'])} of pages; was {format_size(mem['bytes_a'])})"
    )
    for row in mem["processes"]:
        say(
            f"  PID {row['pid']}: {row['bytes_differ']} bytes differ "
            f"({format_size(row['bytes_a'])} -> {format_size(row['bytes_b'])})"
        )
        for v in row["mappings_added"]:
            say(f"    + mapping {v['start']:x}-{v['end']:x} {v['prot']} {v['name']}")
        for v in row["mappings_removed"]:
            say(f"    - mapping {v['start']:x}-{v['end']:x} {v['prot']} {v['name']}")
