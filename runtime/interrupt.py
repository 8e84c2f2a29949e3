"""Interrupts noted when they arrive and acted on where a run can stop cleanly.

A signal (Ctrl-C's SIGINT, a scheduler's SIGTERM, SLURM's requeue signal) can arrive anywhere: in
the middle of an optimizer step, or while one process of several is inside a collective the others
have not reached. Training therefore only notes it here (``request``), and the run acts at the next
iteration boundary, where every process agrees to stop and a checkpoint is consistent
(``callbacks.interrupt.Interruption``). Long work between two boundaries (an evaluation's Jacobian
products, FID's feature batches) asks ``check`` at each step and stops short with ``Interrupted``,
so that an interrupt ends it within a second or two.
"""
from __future__ import annotations

from runtime.distributed import process_maximum

#: the reasons in the order one process's outranks another's when they differ (a requeue asks for
#: a checkpoint of its own)
REASONS = ("SIGINT", "SIGTERM", "requeue")


class Interrupted(KeyboardInterrupt):
    """Work stopped short because the run was interrupted; its message is the reason (the signal's
    name). A KeyboardInterrupt, so that a generic ``except Exception`` does not swallow it."""


_requested: list[str] = []


def request(reason: str) -> None:
    """Note an interrupt (the name of the signal, or another reason)."""
    if not _requested:
        _requested.append(reason)


def requested() -> str | None:
    """The reason of the interrupt noted in this process, None if none."""
    return _requested[0] if _requested else None


def check() -> None:
    """Raise ``Interrupted`` if an interrupt was noted in this process."""
    if _requested:
        raise Interrupted(_requested[0])


def agreed() -> str | None:
    """The interrupt every process acts on: the largest reason noted on any process (one tiny
    all-reduce of the host: every process must call it at the same point), None if none."""
    local = requested()
    code = process_maximum(REASONS.index(local) + 1 if local in REASONS else (len(REASONS) if local else 0))
    return REASONS[code - 1] if code else None


def check_everywhere() -> None:
    """Raise ``Interrupted`` on every process if an interrupt was noted on any (``agreed``)."""
    reason = agreed()
    if reason is not None:
        raise Interrupted(reason)


def clear() -> None:
    """Forget a noted interrupt (a new run in the same process)."""
    _requested.clear()
