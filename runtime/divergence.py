"""The divergence guard: what an iteration with a NaN or an infinity in a loss or an update does.

Under ``stop`` it raises ``NonFiniteError`` before any parameter moves, so the last checkpoint
stays a state worth resuming. Under ``skip`` the iteration counts but moves nothing; a run that
skips more than half of the last ``SKIP_WINDOW`` iterations has diverged and stops all the same.
"""
from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor

#: under ``skip``, a run that skips more than half of this many recent iterations stops
SKIP_WINDOW = 100


class NonFiniteError(FloatingPointError):
    """Training produced a NaN or an infinity."""


def nonfinite(losses: Sequence[Tensor | None], directions: Sequence[Tensor | list[Tensor] | None]) -> Tensor:
    """1.0 when any loss or any entry of a direction (a flat vector or a list of tensors) is not
    finite, else 0.0, as a tensor of shape (1,), so processes can agree with one all-reduce. A sum
    is non-finite when any term is: one reduction per player instead of a check per tensor."""
    values = [loss.detach().float() for loss in losses if loss is not None]
    values += [(d.sum() if isinstance(d, Tensor) else torch.nn.utils.get_total_norm(d)).detach().float()
               for d in directions if d is not None and len(d)]
    return (~torch.isfinite(torch.stack(values))).any().float().reshape(1)


class PendingVerdict:
    """An iteration's finiteness verdict, read later: on a GPU, reading it at once would make the
    host wait for each iteration's kernels to finish before queueing the next one's. The verdict
    and the iteration's losses and update norms are copied to pinned host memory as the GPU
    reaches them (an event marks the copy), so reading them an iteration later waits for nothing.
    On a CPU they are simply kept."""

    def __init__(self, iteration: int, bad: Tensor, losses: Sequence[Tensor | None],
                 directions: Sequence[Tensor | list[Tensor] | None]):
        nan = bad.new_full((), float("nan"))
        values = [bad.reshape(()), *(nan if loss is None else loss.detach().float().reshape(()) for loss in losses),
                  *(nan if d is None else _norm_tensor(d).float() for d in directions)]
        summary = torch.stack([v.to(bad.device) for v in values])
        self.iteration, self.event = iteration, None
        if summary.device.type == "cuda":
            self.host = torch.empty(summary.shape, dtype=summary.dtype, pin_memory=True)
            self.host.copy_(summary, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = summary

    def read(self) -> tuple[bool, list[float]]:
        """(non-finite?, [loss_G, loss_D, |update_G|, |update_D|])."""
        if self.event is not None:
            self.event.synchronize()
        bad, *values = self.host.tolist()
        return bool(bad), values


def _norm_tensor(direction: Tensor | list[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(direction) if isinstance(direction, Tensor) else \
        torch.nn.utils.get_total_norm(direction)


def _value(loss: Tensor | None) -> str:
    return "not computed" if loss is None else f"{float(loss.detach()):.4g}"


def _norm(direction: Tensor | list[Tensor] | None) -> float:
    if direction is None:
        return 0.0
    return float(torch.linalg.vector_norm(direction) if isinstance(direction, Tensor)
                 else torch.nn.utils.get_total_norm(direction))


class DivergenceGuard:
    """The verdict on each iteration, and the count of skipped ones (checkpointed)."""

    def __init__(self, on_nonfinite: Literal["stop", "skip"] = "stop"):
        if on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}")
        self.on_nonfinite = on_nonfinite
        self.skipped = 0
        self.recent: list[int] = []  # iterations skipped among the last SKIP_WINDOW

    def may_step(self, bad: bool, iteration: int, losses: tuple[Tensor | None, Tensor | None],
                 directions: tuple[Tensor | list[Tensor] | None, Tensor | list[Tensor] | None]) -> bool:
        """Whether an iteration found non-finite (``bad``) or not may step; raises
        ``NonFiniteError`` under ``stop`` or once the run has diverged."""
        if not bad:
            return True
        if self.on_nonfinite == "skip":
            if self.recent and self.recent[-1] == iteration:
                return False  # another phase (alternating updates) of an iteration already counted
            self.skipped += 1
            self.recent = [s for s in self.recent if s > iteration - SKIP_WINDOW] + [iteration]
            if len(self.recent) <= SKIP_WINDOW // 2:
                return False
            raise NonFiniteError(
                f"iteration {iteration}: {len(self.recent)} of the last {SKIP_WINDOW} iterations had a non-finite "
                f"loss or update and were skipped ({self.skipped} in all): the run has diverged. The last checkpoint "
                f"is intact; lower the learning rate or the regulariser weight and start again or resume from it.")
        (loss_g, loss_d), (dir_g, dir_d) = losses, directions
        raise NonFiniteError(
            f"iteration {iteration}: non-finite training state (loss_G={_value(loss_g)}, "
            f"loss_D={_value(loss_d)}, |update_G|={_norm(dir_g):.4g}, |update_D|={_norm(dir_d):.4g}); the parameters "
            f"were not updated and the last checkpoint is intact. Lower the learning rate or the regulariser weight, "
            f"resume from the checkpoint (--ckpt_path last), or pass --model.on_nonfinite skip to drop such iterations.")

    def stop_late(self, pending: PendingVerdict) -> None:
        """Raise ``NonFiniteError`` if the iteration of ``pending`` was not finite (under ``stop``
        with the verdict read an iteration later: that iteration's update was applied)."""
        bad, (loss_g, loss_d, norm_g, norm_d) = pending.read()
        if not bad:
            return
        raise NonFiniteError(
            f"iteration {pending.iteration}: non-finite training state (loss_G={loss_g:.4g}, loss_D={loss_d:.4g}, "
            f"|update_G|={norm_g:.4g}, |update_D|={norm_d:.4g}); on a GPU the check is read an iteration later, so "
            f"the parameters took that update, and no checkpoint was written since: the last checkpoint is intact. "
            f"Lower the learning rate or the regulariser weight, resume from the checkpoint (--ckpt_path last), or "
            f"pass --model.on_nonfinite skip to drop such iterations.")

    def state_dict(self) -> dict:
        return {"total": self.skipped, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.skipped, self.recent = state.get("total", 0), list(state.get("recent", []))
