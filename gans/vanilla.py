"""Vanilla gradient descent on the GAN game: simultaneous or alternating updates."""
from __future__ import annotations

from typing import Literal


from gans import compiled, game
from gans.base import TwoPlayerGAN


class Vanilla(TwoPlayerGAN):
    """Plain gradient descent for both players.

    Args:
        update: ``simultaneous`` (both players step along xi evaluated at the same parameters) or
            ``alternating`` (each player's gradient is recomputed after the other has moved).
        order: with ``alternating``, who moves first: ``g_first`` (the JARE code, the Dirac-GAN
            analysis) or ``d_first`` (the ConOpt code).
        n_d: discriminator steps per generator step with ``alternating``. The steps of one
            iteration share its real batch; each draws a fresh z.

    ``update_direction`` returns the field xi at the current parameters in both modes; an
    alternating iteration applies its halves one after the other.
    """

    def __init__(self, *args, update: Literal["simultaneous", "alternating"] = "simultaneous",
                 order: Literal["g_first", "d_first"] = "g_first", n_d: int = 1, **kwargs):
        super().__init__(*args, **kwargs)
        if update not in ("simultaneous", "alternating") or order not in ("g_first", "d_first"):
            raise ValueError(f"update must be 'simultaneous' or 'alternating' and order 'g_first' or 'd_first', "
                             f"got update={update!r}, order={order!r}")
        if n_d < 1:
            raise ValueError(f"n_d must be >= 1, got {n_d}")
        self.update, self.order, self.n_d = update, order, n_d

    def functional_rule(self) -> compiled.Rule | None:
        return compiled.simultaneous if self.update == "simultaneous" else None

    def training_step(self, batch, batch_idx: int) -> None:
        if self.update == "simultaneous":
            return super().training_step(batch, batch_idx)
        real = self._real(batch)
        players = ["g"] + ["d"] * self.n_d if self.order == "g_first" else ["d"] * self.n_d + ["g"]
        opt, grads, reduce = self.optimizers(), {}, self.reduce()
        for k, player in enumerate(players):
            loss_g, loss_d = self._losses(real, self.latent_shard(real.shape[0]))
            if player == "g":
                grads["g"] = reduce(game.grad(loss_g, self.params_g))
                self.apply_update(opt, loss_g, loss_d, grads["g"], None, counted=k == len(players) - 1)
            else:
                grads["d"] = reduce(game.grad(loss_d, self.params_d))
                self.apply_update(opt, loss_g, loss_d, None, grads["d"], counted=k == len(players) - 1)
        if self._should_log():
            self._log_step(loss_g, loss_d, grads["g"], grads["d"], {})
