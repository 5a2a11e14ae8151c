"""``cryostash doctor [--install] [--json]``: what works here and what does not."""

from __future__ import annotations

import argparse
from typing import Any

from cryostash.cli.context import Context, print_json
from cryostash.cli.present import say


def register(sub: Any) -> None:
    """Add the ``doctor`` sub-parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check CRIU, engines, store and catalog"
    )
    p.add_argument(
        "--install",
        action="store_true",
        help="first provide CRIU >= 4.2 (system one if good, else a private prefix)",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Run the checks; exit 1 when any fails."""
    from cryostash.operations.doctor import DoctorRequest, doctor

    if args.install:
        from cryostash.install.criu import provision

        result = provision()
        if not args.json:
            say(f"CRIU {result.version} at {result.path} ({result.source})")
    report = doctor(ctx.repository, DoctorRequest())
    if args.json:
        print_json(report.as_dict())
    else:
        for check in report.checks:
            status = (
                "ok  " if check.ok else "WARN" if check.warning
                else "n/a " if check.optional else "FAIL"
            )
            facts = ", ".join(
                f"{k}={v}"
                for k, v in check.detail.items()
                if v is not None and k not in ("features", "engine")
            )
            say(f"[{status}] {check.name}: {facts}")
            features = check.detail.get("features")
            if features:
                say("       features: " + ", ".join(f"{k}={'yes' if v else 'no'}"
                                                   for k, v in sorted(features.items())))
            if check.error:
                say(f"       {check.error}")
    return 0 if report.ok else 1
