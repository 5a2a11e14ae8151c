"""docs/architecture.md stays the as-built truth: every module of ``src/cryostash`` is
named under its folder, every operation and every command-line verb has its row in the
verb table (naming the module and function that really serve it), and every source path
the page names exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from cryostash.cli.app import build_parser
from cryostash.operations import VERBS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "cryostash"
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, flags=re.M | re.S)
    assert match, f"docs/architecture.md has no section '## {title}'"
    return match.group(1)


def _bullets() -> dict[str, str]:
    """Folder (``store``, or ``root`` for the package root) -> the text of its bullet."""
    found: dict[str, str] = {}
    for match in re.finditer(
        r"^- \*\*(?P<name>[a-z_]+)[^*]*\*\*.*?(?=^- \*\*|\Z)",
        _section("What each folder holds"),
        flags=re.M | re.S,
    ):
        found[match.group("name")] = match.group(0)
    return found


def test_every_module_is_named_under_its_folder() -> None:
    bullets = _bullets()
    table = "\n".join(_verb_rows())
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        folder = rel.parts[0] if len(rel.parts) > 1 else "root"
        if rel.stem == "__init__" and folder != "root":
            continue
        if folder == "root" and rel.stem == "cryostash":
            continue
        text = bullets.get(folder)
        if folder == "cli" and rel.stem.startswith("cmd_") and text and "`cmd_<verb>`" in text:
            continue  # one per verb: the verbs are checked against the parser below
        if folder == "operations" and f"`operations/{rel.name}`" in table:
            continue  # a verb's module, named in the verb table
        if text is None:
            missing.append(f"{rel}: no bullet for the folder {folder}/")
        elif f"`{rel.stem}`" not in text:
            missing.append(f"{rel}: `{rel.stem}` is not named under {folder}/")
    assert not missing, "docs/architecture.md misses modules:\n" + "\n".join(missing)


def _outside_parentheses(text: str) -> str:
    """``text`` without what stands in parentheses opened after a space (what a module
    holds, not modules); a call's parentheses, ``verb(...)``, are kept."""
    kept: list[str] = []
    stack: list[bool] = []  # True: a descriptive parenthesis
    for index, char in enumerate(text):
        if char == "(":
            stack.append(index == 0 or text[index - 1].isspace())
        hidden = any(stack)
        if char == ")" and stack:
            stack.pop()
        if not hidden:
            kept.append(char)
    return "".join(kept)


def test_every_named_module_exists() -> None:
    bullets = _bullets()
    stale = []
    for folder, text in bullets.items():
        base = PACKAGE if folder == "root" else PACKAGE / folder
        listed = re.match(r"- \*\*[^*]+\*\*[^:]*:(.*)", text, flags=re.S)
        assert listed, f"the bullet of {folder}/ does not list its modules after a colon"
        for name in re.findall(r"`([a-z_0-9]+)`", _outside_parentheses(listed.group(1))):
            if name.startswith("cmd_"):
                continue  # cli's cmd_<verb>, one per verb, checked by the verb table
            if not (base / f"{name}.py").exists() and not (base / name).is_dir():
                stale.append(f"{folder}/: `{name}` names no module")
    assert not stale, "docs/architecture.md names modules that do not exist:\n" + "\n".join(stale)


def _verb_rows() -> list[str]:
    return [
        line for line in _section("Where each verb lives").splitlines() if line.startswith("| `")
    ]


def test_every_operation_has_its_row_with_its_module_and_function() -> None:
    rows = "\n".join(_verb_rows())
    missing = []
    for verb, entry in VERBS.items():
        module = entry.function.__module__.removeprefix("cryostash.").replace(".", "/") + ".py"
        cell = f"`{module}`: `{entry.function.__name__}` (`{entry.request.__name__}`)"
        if cell not in rows:
            missing.append(f"{verb}: no row naming {cell}")
    assert not missing, "the verb table of docs/architecture.md:\n" + "\n".join(missing)


def test_every_command_line_verb_has_its_row() -> None:
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    assert verbs
    named = " ".join(row.split("|")[1] for row in _verb_rows())
    missing = [verb for verb in sorted(verbs) if f"`{verb}" not in named]
    assert not missing, f"verbs without a row in the verb table: {', '.join(missing)}"


def test_every_source_path_named_exists() -> None:
    stale = sorted(
        {
            path
            for path in re.findall(r"`((?:[a-z_]+/)+[a-z_0-9]+\.py)`", DOC)
            if not any((base / path).exists() for base in (PACKAGE, ROOT, ROOT / "src"))
        }
    )
    assert not stale, f"docs/architecture.md names files that do not exist: {', '.join(stale)}"
