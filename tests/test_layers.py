"""The layering contract of ``src/cryostash`` (see ``docs/architecture.md``), checked by
parsing every module with :mod:`ast` (nothing of cryostash is imported).

Layers, top to bottom; a module imports only from its own layer or the layers below, and
the siblings of one line (``daemon | manager``, ``operations | install``, ``engines | store |
catalog``) do not import each other::

    cli (and __main__)                (the command line: it starts the daemon, asks it)
    daemon | manager                  (the other front ends: the daemon, library facade)
    operations | install
    repository
    transfer
    engines | store | catalog       (store: the checkpoint store format)
    objects                         (the object seam: backends and their wrappers)
    config
    leaves: the root modules (errors, names, types, units, urls, redact, retention, hooks)

``cryostash/__init__.py`` is the public API: it re-exports names from every layer
(lazily above config), so it is exempt as an importer. ``from cryostash import X`` counts
as importing the module ``X`` really comes from: a submodule, one of the names the root
imports eagerly, or one of its lazy re-exports (``CheckpointManager``: the manager).
Every import counts for the layers: at module level, inside functions (lazy ones) and
under ``if TYPE_CHECKING:``. Import cycles are checked twice: at module level (what runs
at import time), and with lazy and type-checking imports counted too (two modules that
need each other are one concept split in two), against :data:`ALLOWED_CYCLES`, which
names each exception with its reason (empty today).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = SRC / "cryostash"

#: Layer of each folder of the package, and its rank (higher imports lower).
LAYERS: dict[str, int] = {
    "cli": 9,
    "daemon": 8,
    "manager": 8,
    "operations": 7,
    "install": 7,
    "repository": 6,
    "transfer": 5,
    "engines": 4,
    "store": 4,
    "catalog": 4,
    "objects": 3,
    "config": 2,
    "leaves": 1,
}
#: The modules directly in the package root, besides ``__init__`` and ``__main__``.
LEAVES = frozenset(
    {"errors", "names", "types", "units", "urls", "redact", "retention", "hooks"}
)
MAX_LINES = 500
MAX_ROOT_MODULES = 14
#: The only places allowed to touch an fsspec file system attribute (dot, "fs", boundary).
FS_ALLOWED = ("src/cryostash/objects/fsspec_backend.py", "tests/support/")
FS_PATTERN = re.compile(r"\.f" r"s\b")
RETRY_WORDS = frozenset({"retry", "retrying"})


@dataclass(frozen=True)
class Module:
    name: str  # cryostash.store.store; the package itself: cryostash
    path: Path
    is_package: bool

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Import:
    importer: Module
    line: int
    target: str  # the cryostash module imported (resolved), or the external module
    names: tuple[str, ...]  # the names of a ``from ... import``; () for ``import``
    module: str  # the module as written (absolute), e.g. cryostash.store
    lazy: bool  # inside a function: runs when called, not at import time
    type_checking: bool


def _modules() -> dict[str, Module]:
    found: dict[str, Module] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found[".".join(parts)] = Module(".".join(parts), path, is_package)
    return found


MODULES = _modules()


def _tree(module: Module) -> ast.Module:
    return ast.parse(module.path.read_text(encoding="utf-8"), filename=str(module.path))


def layer_of(name: str) -> str | None:
    """The layer of the cryostash module ``name`` (None: belongs to none)."""
    parts = name.split(".")
    if len(parts) == 1:
        return "leaves"  # the package itself, as imported (names resolved elsewhere)
    if len(parts) == 2 and parts[1] == "__main__":
        return "cli"
    if len(parts) == 2 and parts[1] in LEAVES:
        return "leaves"
    if parts[1] in LAYERS and parts[1] != "leaves" and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(
    nodes: list[ast.stmt] | list[ast.AST], lazy: bool, checking: bool
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool, bool]]:
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, lazy, checking
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _walk(node.body, lazy, True)
            yield from _walk(node.orelse, lazy, checking)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(list(ast.iter_child_nodes(node)), True, checking)
        else:
            yield from _walk(list(ast.iter_child_nodes(node)), lazy, checking)


def _absolute(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module.name.split(".")
    if not module.is_package:
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _existing(name: str) -> str:
    """``name``, or its longest prefix that is a module of the package."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) if parts else name


def _root_exports() -> dict[str, str]:
    """What ``from cryostash import NAME`` really imports: NAME -> module."""
    exports: dict[str, str] = {}
    for node in _tree(MODULES["cryostash"]).body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                exports[alias.asname or alias.name] = node.module
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
                assert node.value is not None
                exports.update(ast.literal_eval(node.value))
    return exports


ROOT_EXPORTS = _root_exports()


def imports_of(module: Module) -> Iterator[Import]:
    """Every import in ``module``, each ``from`` name resolved to the module it reaches."""
    for node, lazy, checking in _walk(_tree(module).body, False, False):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = (
                    _existing(alias.name) if alias.name.split(".")[0] == "cryostash" else alias.name
                )
                yield Import(module, node.lineno, target, (), alias.name, lazy, checking)
            continue
        base = _absolute(module, node)
        names = tuple(alias.name for alias in node.names)
        if base.split(".")[0] != "cryostash":
            yield Import(module, node.lineno, base, names, base, lazy, checking)
            continue
        for name in names:
            if f"{base}.{name}" in MODULES:
                target = f"{base}.{name}"
            elif base == "cryostash" and name in ROOT_EXPORTS:
                target = _existing(ROOT_EXPORTS[name])
            else:
                target = _existing(base)
            yield Import(module, node.lineno, target, (name,), base, lazy, checking)


ALL_IMPORTS = [imp for module in MODULES.values() for imp in imports_of(module)]


def _internal(imp: Import) -> bool:
    return imp.target.split(".")[0] == "cryostash"


def test_every_module_belongs_to_a_layer() -> None:
    stray = [
        f"{m.rel}: {m.name} is in no layer (a root module must be one of {sorted(LEAVES)})"
        for m in MODULES.values()
        if m.name != "cryostash" and layer_of(m.name) is None
    ]
    assert not stray, "modules outside the layers:\n" + "\n".join(stray)


def test_imports_only_go_down_the_layers() -> None:
    violations: dict[str, None] = {}  # ordered, one line per importer, line and target
    for imp in ALL_IMPORTS:
        if not _internal(imp) or imp.importer.name == "cryostash":
            continue
        upper, lower = layer_of(imp.importer.name), layer_of(imp.target)
        if upper is None or lower is None or upper == lower:
            continue
        if LAYERS[lower] < LAYERS[upper]:
            continue
        why = "sibling layers" if LAYERS[lower] == LAYERS[upper] else "upward"
        violations[
            f"{imp.importer.rel}:{imp.line}: {imp.importer.name} -> {imp.target} "
            f"({upper} -> {lower}: {why}{', lazy' if imp.lazy else ''}"
            f"{', type-checking' if imp.type_checking else ''})"
        ] = None
    lines = list(violations)
    assert not lines, f"{len(lines)} imports break the layers:\n" + "\n".join(lines)


def _import_graph(*, every: bool = False) -> dict[str, dict[str, int]]:
    """Module -> {module it imports -> line of the first such import}: at import time only,
    or with ``every`` also the imports inside functions and under ``TYPE_CHECKING``.
    A package importing its own submodules (an ``__init__`` re-exporting) is no edge back."""
    graph: dict[str, dict[str, int]] = {name: {} for name in MODULES}
    for imp in ALL_IMPORTS:
        if not _internal(imp) or imp.target not in MODULES:
            continue
        if not every and (imp.lazy or imp.type_checking):
            continue
        graph[imp.importer.name].setdefault(imp.target, imp.line)
    return graph


def _components(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components (Tarjan), iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for succ in edges:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return found


def _shortest_cycle(graph: dict[str, dict[str, int]], members: list[str]) -> list[str]:
    """A shortest cycle through the first of ``members`` (breadth-first)."""
    start, inside = members[0], set(members)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if succ in inside and succ not in parent:
                parent[succ] = node
                queue.append(succ)
    return [*members, start]


def _cycles(graph: dict[str, dict[str, int]], allowed: frozenset[str]) -> list[str]:
    cycles = []
    for members in _components(graph):
        if ", ".join(members) in allowed:
            continue
        cycle = _shortest_cycle(graph, members)
        steps = ", ".join(f"{MODULES[a].rel}:{graph[a][b]} {a} -> {b}" for a, b in pairwise(cycle))
        cycles.append(f"{' -> '.join(cycle)}  [{steps}]  (cycle among: {', '.join(members)})")
    return cycles


#: Cycles allowed when imports inside functions and under ``TYPE_CHECKING`` count too, as
#: the sorted members of the cycle joined by ", ", each with the reason it is justified.
ALLOWED_CYCLES: dict[str, str] = {}


def test_no_import_cycles_at_module_level() -> None:
    cycles = _cycles(_import_graph(), frozenset())
    assert not cycles, "import cycles at module level:\n" + "\n".join(cycles)


def test_no_import_cycles_counting_function_level_and_type_checking_imports() -> None:
    """A cycle hidden in a function (a lazy import) or under ``TYPE_CHECKING`` is a cycle
    of concepts all the same: two modules that each need the other."""
    cycles = _cycles(_import_graph(every=True), frozenset(ALLOWED_CYCLES))
    assert not cycles, "import cycles (lazy and type-checking imports count):\n" + "\n".join(
        cycles
    )


def test_no_module_is_over_500_lines() -> None:
    long = []
    for module in MODULES.values():
        count = len(module.path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            long.append(f"{module.rel}: {count} lines")
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def test_package_root_holds_at_most_14_modules() -> None:
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, (
        f"src/cryostash holds {len(root)} modules (at most {MAX_ROOT_MODULES}): {', '.join(root)}"
    )


def _repository_files() -> list[str]:
    """Tracked and untracked (not ignored) files, relative to the repository root."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return sorted({p for p in listed.split("\0") if p})
    except (OSError, subprocess.CalledProcessError):  # not a checkout (an sdist)
        skip = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
        files = []
        for folder, dirs, names in os.walk(ROOT):
            dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
            files += [Path(folder, n).relative_to(ROOT).as_posix() for n in names]
        return sorted(files)


def test_fsspec_file_systems_stay_in_the_remote_backend() -> None:
    hits = []
    for rel in _repository_files():
        if rel.startswith(FS_ALLOWED):
            continue
        path = ROOT / rel
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):  # deleted, not yet committed
            continue
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if FS_PATTERN.search(line):
                hits.append(f"{rel}:{number}: {line.strip()}")
    assert not hits, (
        "an fsspec file system attribute outside src/cryostash/objects/fsspec_backend.py:\n"
        + "\n".join(hits)
    )


#: The modules of the retries, and the packages allowed to import them: the object seam
#: (its retrying wrapper) and the checkpoint format (its Store wraps every backend).
RETRY_MODULES = frozenset({"cryostash.objects.retrying", "cryostash.objects.retry_policy"})
RETRY_IMPORTERS = ("cryostash.objects", "cryostash.store")
#: Libraries that speak SQL or drive CRIU: neither the seam nor the format may import them.
SQL_OR_CRIU = frozenset({"sqlalchemy", "alembic", "psycopg", "sqlite3", "pycriu"})


def _retry_exports() -> frozenset[str]:
    """The top-level names of the retry modules."""
    return frozenset(
        node.name
        for name in RETRY_MODULES
        for node in _tree(MODULES[name]).body
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    )


def test_retries_are_imported_only_by_the_object_seam_and_the_store_format() -> None:
    exported = _retry_exports()
    violations = []
    for imp in ALL_IMPORTS:
        if imp.importer.name.startswith(RETRY_IMPORTERS):
            continue
        words = {*imp.module.split("."), *imp.target.split("."), *imp.names}
        if (
            words & RETRY_WORDS
            or imp.target in RETRY_MODULES
            or (imp.module == "cryostash.objects" and set(imp.names) & exported)
        ):
            violations.append(
                f"{imp.importer.rel}:{imp.line}: {imp.importer.name} imports "
                f"{imp.module}{' (' + ', '.join(imp.names) + ')' if imp.names else ''}"
            )
    assert not violations, (
        "retries are the object seam's business (cryostash.objects.retrying):\n"
        + "\n".join(violations)
    )


def test_the_seam_and_the_format_know_neither_sql_nor_criu() -> None:
    violations = [
        f"{imp.importer.rel}:{imp.line}: {imp.importer.name} imports {imp.target}"
        for imp in ALL_IMPORTS
        if imp.importer.name.startswith(("cryostash.objects", "cryostash.store"))
        and imp.target.split(".")[0] in SQL_OR_CRIU
    ]
    assert not violations, "SQL or CRIU below the catalog and engines:\n" + "\n".join(violations)
