"""Issue 25, "the first hour": rows 4, 6, 10 and 14 of its table, through the real
``cryostash`` command (a new process per command) against a private store and catalog,
and docs/cli.md, the README synopsis and the man page checked against the parser.
Each test is named after its row."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cryostash.cli.app import build_parser
from cryostash.cli.parsing import merge_globals
from tests.support.cli import host_env, run
from tests.support.processes import ProcessTracker

REPO = Path(__file__).resolve().parent.parent
Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path, criu_path: str) -> Cli:
    """``cryostash ARGS`` as a user runs it, on the test's own store, catalog, scratch;
    ``code``: the exit code expected (None: any, as ``doctor``'s depends on the machine)."""
    env = host_env(tmp_path / "cs", criu=criu_path)

    def cryostash(*args: str, code: int | None = 0) -> subprocess.CompletedProcess[str]:
        done = run(list(args), env, check=False)
        assert code is None or done.returncode == code, (args, done.returncode, done.stderr)
        return done

    return cryostash


# -- row 4: options after the verb, the verb's usage and a suggestion, no abbreviations --


def test_row4_global_options_are_accepted_after_the_verb(cli: Cli, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    assert cli("db", "upgrade", "--catalog", f"sqlite:///{other}").stdout.split() == ["0003"]
    assert other.exists()
    cli("store", "init")  # an empty store and catalog: reading verbs never create them
    cli("db", "upgrade")
    missing = cli("prefetch", "app", "cp1", "--cache", "none", code=3)
    assert "checkpoint cp1 does not exist for container app" in missing.stderr
    args = merge_globals(build_parser().parse_args(
        ["--storage-option", "a=1", "--jobs", "2", "ls", "--storage-option", "b=2", "--jobs", "3"]
    ))
    assert (args.storage_option, args.jobs) == (["a=1", "b=2"], 3)


def test_row4_a_verbs_own_option_wins_after_the_verb() -> None:
    args = merge_globals(build_parser().parse_args(["--host", "me", "ls", "--host", "other"]))
    assert (args.host, args.filter_host) == ("me", "other")


def test_row4_flag_typo_shows_the_verbs_usage_and_a_suggestion(cli: Cli) -> None:
    done = cli("create", "app", "x", "--pid", "1", "--leave-runing", code=2)
    assert done.stderr.startswith("usage: cryostash create ")
    assert "unrecognized arguments: --leave-runing" in done.stderr
    assert done.stderr.rstrip().endswith("did you mean --leave-running?")
    verb = cli("creat", "app", "x", code=2)
    assert verb.stderr.rstrip().endswith("did you mean create?")


def test_row4_no_abbreviations(cli: Cli) -> None:
    done = cli("ls", "--pend", code=2)
    assert done.stderr.startswith("usage: cryostash ls ")
    assert "unrecognized arguments: --pend" in done.stderr
    assert "did you mean --pending?" in done.stderr
    assert all(p.allow_abbrev is False for _, p in _parsers(build_parser()))


# -- row 6: --version, completion, man page, the bare command --------------------------------


def test_row6_version_names_cryostash_criu_and_the_schema(cli: Cli, criu_path: str) -> None:
    lines = cli("--version").stdout.splitlines()
    assert lines[0] == "cryostash 0.1.0"
    assert re.fullmatch(r"CRIU 4\.\d+(\.\d+)? \(.+/criu\)", lines[1]), lines
    assert lines[2] == "catalog schema 0003"
    absent = cli("--criu", "/nonexistent/criu", "--version").stdout.splitlines()
    assert absent[1] == "CRIU unknown (/nonexistent/criu did not report a version)"


def test_row6_cryostash_alone_prints_the_short_help(cli: Cli) -> None:
    done = cli()
    assert done.stdout.startswith("usage: cryostash [GLOBAL OPTIONS] VERB [OPTIONS]\n")
    verbs = re.findall(r"^  (\S+)", done.stdout, re.M)
    assert verbs == [name for name, _ in _verbs(build_parser())]


def test_row6_bash_completion_completes_verbs_sub_verbs_and_options(cli: Cli) -> None:
    script = cli("completion", "bash").stdout

    def complete(*words: str) -> list[str]:
        line = " ".join(("cryostash", *words))
        probe = (
            f"{script}\nCOMP_WORDS=(cryostash {' '.join(repr(w) for w in words)}); "
            f"COMP_CWORD={len(words)}; COMP_LINE={line!r}; COMP_POINT={len(line)}; "
            "_shtab_cryostash; printf '%s\\n' \"${COMPREPLY[@]}\""
        )
        done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True)
        return done.stdout.split()

    assert complete("cre") == ["create"]
    assert sorted(complete("db", "")) == ["current", "upgrade"]
    assert complete("create", "app", "x", "--leave") == ["--leave-running"]
    assert complete("migrate", "--rec") == []  # the internal --receive is not offered


def test_row6_zsh_and_fish_completion_are_generated_from_the_parser(cli: Cli) -> None:
    zsh = cli("completion", "zsh").stdout
    assert zsh.startswith("#compdef cryostash")
    assert "--leave-running" in zsh
    fish = cli("completion", "fish").stdout.splitlines()
    for name, _ in _verbs(build_parser()):
        assert any(f"-n __fish_use_subcommand -a {name} " in line for line in fish), name
    assert any(
        "'__fish_seen_subcommand_from create'" in line and "-l leave-running" in line
        for line in fish
    )
    assert not any("receive" in line for line in fish)
    cli("completion", "tcsh", code=2)


def test_row6_man_page_is_the_parsers() -> None:
    generated = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make-manpage"), "-"],
        capture_output=True, text=True, check=True,
    ).stdout
    committed = (REPO / "man" / "cryostash.1").read_text()
    assert generated == committed, "man/cryostash.1 is stale: run `make man`"
    for path, parser in _parsers(build_parser()):
        for flag in _documented_flags(parser):
            assert flag.replace("-", "\\-") in committed, (path, flag)


# -- row 10: inspect's sections, CRIU's timings, --log --json ---------------------------------


def test_row10_inspect_heads_its_sections_and_shows_criu_timings(
    cli: Cli, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    cli("create", "app", "cp1", "--pid", str(proc.pid), "--leave-running", "--label", "k=v")
    text = cli("inspect", "app", "cp1").stdout
    blocks = [b.splitlines() for b in text.split("\n\n")]
    heads = [b[0] for b in blocks]
    shown = json.loads(cli("inspect", "app", "cp1", "--json").stdout)
    files = f"files: {len(shown['files'])} ({shown['size_bytes']} bytes; --json lists them)"
    assert heads[:3] == ["checkpoint app/cp1", "labels", files]
    assert heads[3].startswith("statistics") and heads[4].startswith("criu's own statistics")
    assert blocks[1][1:] == ["  k=v"]
    criu = dict(line.split(":", 1) for line in blocks[4][1:])
    assert int(criu["  frozen_time_us"]) > 0 and int(criu["  memdump_time_us"]) >= 0
    assert all(line.startswith("  ") for block in blocks for line in block[1:])
    refused = cli("inspect", "app", "cp1", "--log", "--json", code=2)
    assert "argument --json: not allowed with argument --log" in refused.stderr


# -- row 14: small words and tables ----------------------------------------------------------


def test_row14_events_header_counts_gc_tense_and_hidden_receive(
    cli: Cli, procs: ProcessTracker, tmp_path: Path
) -> None:
    proc = procs.counter(tmp_path / "p")
    cli("create", "app", "cp1", "--pid", str(proc.pid), "--leave-running")
    cli("create", "longer-target-name", "c2", "--pid", str(proc.pid), "--leave-running")
    lines = cli("events").stdout.splitlines()
    assert lines[0].split() == ["TIME", "HOST", "ACTION", "CONTAINER", "CHECKPOINT", "NAME"]
    starts = {line.index("checkpoint") for line in lines[1:]}
    assert len(lines) == 3 and len(starts) == 1, lines  # aligned columns
    assert lines[0].index("ACTION") == starts.pop()
    summary = cli("verify", "app", "cp1").stdout.splitlines()[-1]
    assert summary.startswith("1 checkpoint, "), summary
    dry = cli("gc", "--dry-run").stdout.splitlines()[-1]
    assert dry.startswith("would remove 0 blobs (0 bytes); would keep "), dry
    done = cli("gc").stdout.splitlines()[-1]
    assert done.startswith("removed 0 blobs (0 bytes); kept "), done
    assert "--receive" not in cli("migrate", "--help").stdout


def test_row14_doctor_and_db_current_agree_on_a_catalog_not_created(cli: Cli) -> None:
    note = "no catalog yet: the first write or `cryostash db upgrade` creates it at 0003"
    assert cli("db", "current").stdout.strip() == f"none ({note})"
    doctor = json.loads(cli("doctor", "--json", code=None).stdout)
    (catalog,) = [c for c in doctor["checks"] if c["name"] == "catalog"]
    assert catalog["note"] == note


# -- docs/cli.md and the README synopsis, tested against the parser ---------------------------


def test_every_verb_and_option_of_the_parser_is_in_docs_cli_md() -> None:
    doc = (REPO / "docs" / "cli.md").read_text()
    sections = _sections(doc)
    shared = sections["Global options and configuration"] + sections["Filters and `--latest`"]
    for path, parser in _parsers(build_parser()):
        if not path:
            continue
        verb = " ".join(path)
        assert any(s == verb or s.startswith(f"{path[0]}") for s in sections), verb
        assert verb in doc, verb
        text = sections.get(verb, sections.get(path[0], "")) + shared
        for flag in _documented_flags(parser):
            assert re.search(re.escape(flag) + r"(?![\w-])", text), (verb, flag)


def test_every_verb_is_in_the_readme_synopsis() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme.split("## Commands", 1)[1].split("```", 2)[1]
    for path, _ in _parsers(build_parser()):
        if not path:
            continue
        verb = " ".join(path)
        assert re.search(rf"^  {re.escape(path[0])}\b", block, re.M), verb
        assert re.search(rf"\b{re.escape(verb)}\b", block), verb
    for named in ("events [TARGET] [--limit N]", "--pending", "-a|--all", "[--log]",
                  "cryostash --version", "completion bash|zsh|fish"):
        assert named in block, named


# -- helpers ----------------------------------------------------------------------------------


def _verbs(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            shown = {c.dest for c in action._choices_actions}
            found += [(n, p) for n, p in action.choices.items() if n in shown]
    return found


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for name, child in _verbs(parser):
        yield from _parsers(child, (*path, name))


def _documented_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [
        flag
        for action in parser._actions
        if action.help != argparse.SUPPRESS
        for flag in action.option_strings
        if flag not in ("-h", "--help")
    ]


def _sections(text: str) -> dict[str, str]:
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        heading = re.match(r"^#{2,3} (.+)$", line)
        if heading:
            current = found.setdefault(heading.group(1).strip(), [])
        else:
            current.append(line)
    return {k: "\n".join(v) for k, v in found.items()}
