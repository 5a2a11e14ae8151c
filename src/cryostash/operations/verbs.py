"""``VERBS``: every operation by verb name, with its request type (what a front end that
decodes requests, such as a daemon reading JSON, needs to call one).

Each entry's function takes ``(repository, request)`` and returns a frozen dataclass (with
``as_dict`` where its JSON form is not its fields), a ``CheckpointInfo``, a
``RestoreResult``, a tuple of ``Event`` or a stats dict. ``import``, ``export`` and
``migrate --receive`` also take a stream (the archive, the archive's destination, the
protocol's lines): in process only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryostash.operations import (
    create,
    diff,
    doctor,
    events,
    export_archive,
    gc,
    import_archive,
    inspect,
    inspect_contents,
    ls,
    migrate,
    migrate_receive,
    prefetch,
    prune,
    rebuild,
    restore,
    restore_lazy,
    rm,
    verify,
)


@dataclass(frozen=True)
class Verb:
    """One operation: its request type and its function ``(repository, request) -> result``."""

    request: type[Any]
    function: Callable[..., Any]


#: Verb name -> :class:`Verb`.
VERBS: dict[str, Verb] = {
    "create": Verb(create.CreateRequest, create.create),
    "restore": Verb(restore.RestoreRequest, restore.restore),
    "restore-lazy": Verb(restore_lazy.LazyRestoreRequest, restore_lazy.restore_lazy),
    "rm": Verb(rm.RmRequest, rm.rm),
    "ls": Verb(ls.LsRequest, ls.ls),
    "inspect": Verb(inspect.InspectRequest, inspect.inspect),
    "inspect-contents": Verb(inspect_contents.ContentsRequest, inspect_contents.inspect_contents),
    "diff": Verb(diff.DiffRequest, diff.diff),
    "prefetch": Verb(prefetch.PrefetchRequest, prefetch.prefetch),
    "verify": Verb(verify.VerifyRequest, verify.verify),
    "gc": Verb(gc.GcRequest, gc.gc),
    "prune": Verb(prune.PruneRequest, prune.prune),
    "rebuild": Verb(rebuild.RebuildRequest, rebuild.rebuild),
    "import": Verb(import_archive.ImportRequest, import_archive.import_archive),
    "export": Verb(export_archive.ExportRequest, export_archive.export_archive),
    "migrate": Verb(migrate.MigrateRequest, migrate.migrate),
    "migrate-receive": Verb(migrate_receive.ReceiveRequest, migrate_receive.receive),
    "events": Verb(events.EventsRequest, events.events),
    "doctor": Verb(doctor.DoctorRequest, doctor.doctor),
}
