"""Retention policies: which checkpoints of a target to keep (pure values, no I/O).

Semantics follow restic's ``forget``:

- A policy is a union of rules: a checkpoint is kept if ANY rule keeps it, and every
  kept checkpoint carries the reasons of each rule that keeps it (``last 3``,
  ``within 7d``, ``label env=prod``). Every other checkpoint is removed.
- Rules look at COMMITTED checkpoints only, newest first: by ``created_at`` (when the
  checkpoint was started, the time its manifest records, so a rebuilt catalog orders
  them exactly as the lost one did), then by id. PENDING checkpoints are ignored:
  neither kept nor removed.
- A policy decides for each target (``(store_url, target)``) on its own, never across
  targets: :meth:`Policy.apply` groups what it is given.

Rules:

- :class:`KeepLast` ``N`` (N >= 1): the N newest checkpoints of the target.
- :class:`KeepWithin` ``DURATION``: every checkpoint created at most DURATION before
  the target's NEWEST checkpoint (not before "now": when checkpoints stop being made,
  pruning never removes the last ones). DURATION as :func:`cryostash.units.parse_duration`
  reads it (``90m``, ``12h``, ``7d``, ``2w``, ``1d12h``, or seconds), longer than 0.
- :class:`KeepLabel` ``K=V``: checkpoints labelled ``K`` with the value ``V``.

A :class:`Policy` is JSON (de)serialisable (:meth:`Policy.to_dict`,
:meth:`Policy.from_dict`) so it can be stored as a target's default. Invalid input
raises :class:`~cryostash.errors.UsageError` naming the rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from cryostash.errors import UsageError
from cryostash.types import CheckpointInfo, Status
from cryostash.units import parse_duration

_DURATION_HINT = "expected seconds or numbers with a unit (s, m, h, d, w), e.g. 90m, 12h, 7d, 1d12h"


def _within_seconds(text: str) -> float:
    """Seconds in a ``--keep-within`` duration (:func:`cryostash.units.parse_duration`),
    which must be longer than 0.

    Raises:
        UsageError: ``invalid duration 'TEXT': expected ...`` (not a duration, negative)
            or ``... it must be longer than 0``.
    """
    try:
        seconds = parse_duration(text)
    except UsageError:
        raise UsageError(f"invalid duration {text!r}: {_DURATION_HINT}") from None
    if seconds <= 0:
        raise UsageError(f"invalid duration {text!r}: it must be longer than 0")
    return seconds


def checkpoint_time(info: CheckpointInfo) -> datetime:
    """When ``info`` was made: ``created_at``, the creation time its manifest records
    (not ``committed_at``, which a rebuilt catalog cannot know)."""
    return info.created_at


def newest_first(checkpoints: Iterable[CheckpointInfo]) -> list[CheckpointInfo]:
    """``checkpoints`` sorted newest first: by :func:`checkpoint_time`, then by id."""
    return sorted(checkpoints, key=lambda i: (checkpoint_time(i), i.id), reverse=True)


class Rule(Protocol):
    """One keep rule: which checkpoints of ONE target it keeps, and why."""

    @property
    def reason(self) -> str:
        """Why a checkpoint this rule keeps is kept (``last 3``, ``within 7d``)."""
        ...

    def keeps(self, ordered: Sequence[CheckpointInfo]) -> set[int]:
        """Ids of the checkpoints kept among ``ordered``: the committed checkpoints of
        one target, newest first (see :func:`newest_first`)."""
        ...


@dataclass(frozen=True)
class KeepLast:
    """Keep the ``n`` newest checkpoints (all of them when there are fewer)."""

    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise UsageError(f"invalid count {self.n!r}: expected a whole number >= 1")

    @property
    def reason(self) -> str:
        return f"last {self.n}"

    def keeps(self, ordered: Sequence[CheckpointInfo]) -> set[int]:
        return {info.id for info in ordered[: self.n]}


@dataclass(frozen=True)
class KeepWithin:
    """Keep every checkpoint committed at most ``duration`` before the newest one.

    ``duration`` is kept as written (it is the reason shown); see
    :func:`cryostash.units.parse_duration` (and it must be longer than 0).
    """

    duration: str

    def __post_init__(self) -> None:
        if not isinstance(self.duration, str):
            raise UsageError(f"invalid duration {self.duration!r}: {_DURATION_HINT}")
        object.__setattr__(self, "duration", self.duration.strip().lower())
        _within_seconds(self.duration)

    @property
    def seconds(self) -> float:
        """The duration in seconds."""
        return _within_seconds(self.duration)

    @property
    def reason(self) -> str:
        return f"within {self.duration}"

    def keeps(self, ordered: Sequence[CheckpointInfo]) -> set[int]:
        if not ordered:
            return set()
        oldest_kept = checkpoint_time(ordered[0]) - timedelta(seconds=self.seconds)
        return {info.id for info in ordered if checkpoint_time(info) >= oldest_kept}


@dataclass(frozen=True)
class KeepLabel:
    """Keep the checkpoints whose label ``key`` has the value ``value``."""

    key: str
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key or not isinstance(self.value, str):
            raise UsageError(f"invalid label {self.key!r}={self.value!r}: expected KEY=VALUE")

    @classmethod
    def parse(cls, text: str) -> KeepLabel:
        """``KEY=VALUE`` (the value may be empty, the key may not).

        Raises:
            UsageError: ``invalid label 'TEXT': expected KEY=VALUE``.
        """
        key, sep, value = text.partition("=") if isinstance(text, str) else ("", "", "")
        if not sep or not key:
            raise UsageError(f"invalid label {text!r}: expected KEY=VALUE")
        return cls(key, value)

    @property
    def text(self) -> str:
        """``KEY=VALUE``."""
        return f"{self.key}={self.value}"

    @property
    def reason(self) -> str:
        return f"label {self.text}"

    def keeps(self, ordered: Sequence[CheckpointInfo]) -> set[int]:
        return {info.id for info in ordered if info.labels.get(self.key) == self.value}


@dataclass(frozen=True)
class Kept:
    """A checkpoint a policy keeps, and the reason of every rule that keeps it."""

    checkpoint: CheckpointInfo
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    """What a policy does to a set of checkpoints: both lists newest first per target,
    targets in order of ``(store_url, target)``."""

    kept: tuple[Kept, ...] = ()
    removed: tuple[CheckpointInfo, ...] = ()


_KEYS = ("keep_last", "keep_within", "keep_labels")


@dataclass(frozen=True)
class Policy:
    """The union of ``rules``: at least one; at most one :class:`KeepLast` and one
    :class:`KeepWithin`; any number of distinct :class:`KeepLabel`."""

    rules: tuple[KeepLast | KeepWithin | KeepLabel, ...] = field(default=())

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        if not rules:
            raise UsageError(
                "a retention policy needs at least one rule: keep-last, keep-within or "
                "keep-label"
            )
        for rule in rules:
            if not isinstance(rule, KeepLast | KeepWithin | KeepLabel):
                raise UsageError(f"not a retention rule: {rule!r}")
        for kind, name in ((KeepLast, "keep-last"), (KeepWithin, "keep-within")):
            if sum(isinstance(r, kind) for r in rules) > 1:
                raise UsageError(f"a retention policy takes at most one {name} rule")
        if len(set(rules)) != len(rules):
            raise UsageError("a retention policy lists the same rule twice")

    @classmethod
    def of(
        cls,
        *,
        keep_last: int | None = None,
        keep_within: str | None = None,
        keep_labels: Iterable[str] = (),
    ) -> Policy | None:
        """The policy of these options (``keep_labels`` as ``K=V``); None when none is
        given. Repeated labels count once."""
        rules: list[KeepLast | KeepWithin | KeepLabel] = []
        if keep_last is not None:
            rules.append(KeepLast(keep_last))
        if keep_within is not None:
            rules.append(KeepWithin(keep_within))
        rules.extend(dict.fromkeys(KeepLabel.parse(t) for t in keep_labels))
        return cls(tuple(rules)) if rules else None

    @property
    def keep_last(self) -> KeepLast | None:
        """The :class:`KeepLast` rule, if any."""
        return next((r for r in self.rules if isinstance(r, KeepLast)), None)

    @property
    def keep_within(self) -> KeepWithin | None:
        """The :class:`KeepWithin` rule, if any."""
        return next((r for r in self.rules if isinstance(r, KeepWithin)), None)

    @property
    def keep_labels(self) -> tuple[KeepLabel, ...]:
        """The :class:`KeepLabel` rules."""
        return tuple(r for r in self.rules if isinstance(r, KeepLabel))

    @property
    def keeps_newest(self) -> bool:
        """True when the newest checkpoint of a target is always kept (a keep-last or
        keep-within rule): required of a policy applied right after a create."""
        return self.keep_last is not None or self.keep_within is not None

    def to_dict(self) -> dict[str, Any]:
        """``{"keep_last": N|null, "keep_within": "7d"|null, "keep_labels": ["K=V"...]}``."""
        last, within = self.keep_last, self.keep_within
        return {
            "keep_last": last.n if last else None,
            "keep_within": within.duration if within else None,
            "keep_labels": [r.text for r in self.keep_labels],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """The inverse of :meth:`to_dict` (missing keys mean no such rule).

        Raises:
            UsageError: not an object, unknown keys, wrong types, invalid rules, no rule.
        """
        if not isinstance(data, Mapping):
            raise UsageError(f"invalid retention policy {data!r}: expected a JSON object")
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise UsageError(
                f"invalid retention policy: unknown keys {', '.join(map(str, unknown))} "
                f"(known: {', '.join(_KEYS)})"
            )
        labels = data.get("keep_labels") or []
        if not isinstance(labels, list):
            raise UsageError("invalid retention policy: keep_labels must be a list of K=V")
        policy = cls.of(
            keep_last=data.get("keep_last"),
            keep_within=data.get("keep_within"),
            keep_labels=labels,
        )
        if policy is None:
            return cls(())  # raises: no rule
        return policy

    def describe(self) -> str:
        """The rules as flags: ``--keep-last 3 --keep-within 7d --keep-label env=prod``."""
        parts: list[str] = []
        if self.keep_last:
            parts.append(f"--keep-last {self.keep_last.n}")
        if self.keep_within:
            parts.append(f"--keep-within {self.keep_within.duration}")
        parts.extend(f"--keep-label {r.text}" for r in self.keep_labels)
        return " ".join(parts)

    def apply(self, checkpoints: Iterable[CheckpointInfo]) -> Decision:
        """Decide, target by target, which of ``checkpoints`` are kept and which removed.

        PENDING checkpoints are ignored (in neither list).
        """
        groups: dict[tuple[str, str], list[CheckpointInfo]] = {}
        for info in checkpoints:
            if info.status is Status.COMMITTED:
                groups.setdefault((info.store_url, info.target), []).append(info)
        kept: list[Kept] = []
        removed: list[CheckpointInfo] = []
        for key in sorted(groups):
            ordered = newest_first(groups[key])
            by_rule = [(rule.reason, rule.keeps(ordered)) for rule in self.rules]
            for info in ordered:
                reasons = tuple(reason for reason, ids in by_rule if info.id in ids)
                if reasons:
                    kept.append(Kept(info, reasons))
                else:
                    removed.append(info)
        return Decision(tuple(kept), tuple(removed))
