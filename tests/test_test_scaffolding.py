"""Test scaffolding lives in ``tests/support`` (issue 22): no module of ``tests/`` (test
modules, ``conftest.py``, support modules) imports a test module (``tests/test_*.py``).
A helper or constant that two test modules share goes to a module of ``tests/support``
named for what it holds. Checked by parsing with :mod:`ast` (nothing is imported);
relative imports are resolved against the module's package."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def module_name(path: Path) -> str:
    """Dotted name of a file under ``tests/`` (``tests.support.cli``, ``tests``)."""
    parts = path.relative_to(TESTS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_test_module(name: str) -> bool:
    """``tests.test_x`` or anything inside it (``tests.test_x.helper``)."""
    parts = name.split(".")
    return len(parts) >= 2 and parts[0] == "tests" and parts[1].startswith("test_")


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name) of every module the text ``source`` of ``module`` imports; a
    ``from X import Y`` counts as ``X`` and ``X.Y`` (``Y`` may be a module)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            origin = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, origin))
            found += [(node.lineno, f"{origin}.{alias.name}") for alias in node.names]
    return found


def test_no_module_of_tests_imports_a_test_module() -> None:
    offenders = sorted({
        f"{path.relative_to(TESTS.parent)}:{line} imports {'.'.join(name.split('.')[:2])}"
        for path in TESTS.rglob("*.py")
        for line, name in imported(
            path.read_text(), module_name(path), path.name == "__init__.py"
        )
        if is_test_module(name)
    })
    assert not offenders, (
        "a test module is no library: move what test modules share into tests/support/\n"
        + "\n".join(offenders)
    )


def test_the_check_sees_plain_from_and_relative_imports() -> None:
    source = (
        "import tests.test_a\n"
        "from tests.test_b import helper\n"
        "from tests import test_c, support\n"
        "from ..test_d import x\n"
        "from . import cli\n"
        "from tests.support.cli import Host\n"
        "def lazy():\n"
        "    import tests.test_e\n"
    )
    found = {name for _, name in imported(source, "tests.support.probe") if is_test_module(name)}
    assert found == {
        "tests.test_a", "tests.test_b", "tests.test_b.helper", "tests.test_c",
        "tests.test_d", "tests.test_d.x", "tests.test_e",
    }
