"""Every numeric option has a range (docs/cli.md) and a value outside it is a usage
error (exit 2); a seeded fuzz run over every verb's options finds no traceback and no
unbounded allocation.

The fuzz run builds argv from the parser's own actions (random whole numbers, huge and
negative ones included, and random text with control characters for the options taking
a number, a size, a duration or a time; fixed harmless positionals; a PID that is not
running) with hypothesis, then runs them all in one process under a 2 GiB address-space
limit, calling the CLI's entry function in-process. Nothing there has a real process to
checkpoint, so every verb ends early.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryostash.cli.app import build_parser
from tests.support.cli import Host, base_env

#: Exit codes docs/cli.md documents.
DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 130, 141}
#: Options whose value is a number, a size, a duration or a time (by metavar).
NUMERIC = {"N", "SIZE", "DURATION", "WHEN", "S", "LEVEL|none", "N%|K/M"}
#: Verbs never fuzzed: they run commands of the user's choosing or install software.
SKIPPED = {"doctor"}
MEMORY_LIMIT = 2 << 30


def _free_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    host = Host(tmp_path / "cs", "host-a", {"CRYOSTASH_CACHE": "none"})
    return {**base_env(), **host.env()}


def _run_all(argvs: list[list[str]], env: dict[str, str]) -> list[dict[str, object]]:
    """Run every argv in-process in one child limited to MEMORY_LIMIT; their outcomes."""
    code = (
        "import io, json, sys, traceback, contextlib\n"
        "from cryostash.cli.app import run\n"
        "results = []\n"
        "for argv in json.load(sys.stdin):\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "            code = run(argv)\n"
        "    except SystemExit as exc:\n"
        "        code = exc.code if isinstance(exc.code, int) else 2\n"
        "    except BaseException:\n"
        "        code = 'traceback: ' + traceback.format_exc()\n"
        "    results.append({'argv': argv, 'code': code, 'said': out.getvalue()[-300:]})\n"
        "sys.__stdout__.write(json.dumps(results))\n"
    )

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(argvs), capture_output=True,
        text=True, env=env, timeout=600, check=False, preexec_fn=limited,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results: list[dict[str, object]] = json.loads(done.stdout)
    return results


RANGES = [
    (["migrate", "app", "cp", "--pid", "PID", "--precopy", "99999999999"], "--precopy"),
    (["migrate", "app", "cp", "--pid", "PID", "--precopy", "-1"], "--precopy"),
    (["events", "--limit", "-1"], "--limit"),
    (["events", "--limit", str(2**64)], "--limit"),
    (["gc", "--grace", "9999999999999d"], "36500d"),
    (["prune", "app", "--keep-within", "100000000000000000000w"], "--keep-within"),
    (["prune", "app", "--keep-last", "1" * 5000], "--keep-last"),
    (["ls", "--since", "0001-01-01T00:00:00+14:00"], "--since"),
    (["--jobs", "0", "ls"], "--jobs"),
    (["--jobs", "100000", "ls"], "--jobs"),
    (["--cache-size", "1e400", "ls"], "cache size"),
    (["--chunk-size", "1e400", "ls"], "chunk size"),
    (["--chunk-size", "3", "ls"], "chunk size"),
    (["--compression", "99", "ls"], "compression"),
    (["--scratch", "/dev/null", "import", "app", "cp", "/dev/null"], "not a folder"),
]


def test_values_out_of_range_are_usage_errors(env: dict[str, str]) -> None:
    pid = str(_free_pid())
    argvs = [[pid if a == "PID" else a for a in argv] for argv, _ in RANGES]
    for (_, word), result in zip(RANGES, _run_all(argvs, env), strict=True):
        assert result["code"] == 2 and word in str(result["said"]), result


def _options(parser: argparse.ArgumentParser) -> dict[str, list[argparse.Action]]:
    """Verb -> its fuzzable options (with the global ones under ``""``)."""
    found: dict[str, list[argparse.Action]] = {"": []}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for verb, sub in action.choices.items():
                if verb in SKIPPED:
                    continue
                found[verb] = [a for a in sub._actions if a.option_strings
                               and a.metavar in NUMERIC]
        elif action.option_strings and action.metavar in NUMERIC:
            found[""].append(action)
    return found


_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-0", "1e400", "nan", "inf", "9" * 30, "1" * 5000, "2^64",
                     "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                     "9999999999999d", "1e20w", "7d", "10%", "0/0", "1/0", "none"]),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=40),
)


def test_fuzzed_options_never_give_a_traceback(env: dict[str, str]) -> None:
    options = _options(build_parser())
    verbs = sorted(v for v, acts in options.items() if v and acts)
    positionals = {"migrate": ["app", "cp", "--pid", str(_free_pid())],
                   "prune": ["app"], "import": ["app", "cp", "/nonexistent.tar"],
                   "create": ["app", "cp", "--pid", str(_free_pid())]}
    argvs: list[list[str]] = []

    @settings(max_examples=200, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: st.DataObject) -> None:
        verb = data.draw(st.sampled_from(verbs))
        argv: list[str] = []
        for action in data.draw(st.lists(st.sampled_from(options[""]), max_size=2)):
            argv += [action.option_strings[-1], data.draw(_TEXT)]
        argv += [verb, *positionals.get(verb, [])]
        for action in data.draw(st.lists(st.sampled_from(options[verb]), min_size=1,
                                         max_size=3)):
            argv.append(f"{action.option_strings[-1]}={data.draw(_TEXT)}")
        argvs.append(argv)

    collect()
    assert len(argvs) >= 100
    results = _run_all(argvs, env)
    bad = [r for r in results if r["code"] not in DOCUMENTED]
    assert bad == []
