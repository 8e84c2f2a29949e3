"""``GameDDPStrategy``: Lightning's DDP for games that average across processes themselves
(``runtime.distributed``). Importing this module registers the names ``game_ddp`` and
``game_ddp_spawn`` (``--trainer.strategy game_ddp``)."""
from __future__ import annotations

import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry

from runtime.distributed import FailureWatch, assert_in_sync, broadcast_module_state


class GameDDPStrategy(DDPStrategy):
    """Lightning's DDP (process launch, process groups, SLURM/torchrun environments, samplers,
    metric reduction) without the DistributedDataParallel wrapper, whose reducer cannot see the
    gradients these models take with ``autograd.grad``: the models average across processes
    themselves (``runtime.distributed``). Names: ``game_ddp``, ``game_ddp_spawn``.

    An error on one process ends every process within about a second (``FailureWatch``), instead
    of leaving the others in a collective until the process group's timeout.

    Args:
        check_sync_every: in debug runs, check every this many iterations that all processes hold
            the same parameters (one small all-gather); 0 never checks.
    """

    def __init__(self, *args, check_sync_every: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_sync_every = check_sync_every
        self.failure_watch: FailureWatch | None = None  # made in each process (a spawn launcher pickles this)

    def setup_distributed(self) -> None:
        super().setup_distributed()
        self.failure_watch = FailureWatch()
        self.failure_watch.start()

    def configure_ddp(self) -> None:
        broadcast_module_state(self.model)

    def on_exception(self, exception: BaseException) -> None:
        super().on_exception(exception)
        if self.failure_watch is not None:
            self.failure_watch.publish(exception)

    def teardown(self) -> None:
        if self.failure_watch is not None:
            self.failure_watch.stop()
        super().teardown()
        if self._start_method != "popen" and dist.is_initialized():
            # A gloo group alive at interpreter exit aborts the process now and then ("terminate
            # called without an active exception"), and Lightning tears down only NCCL groups at exit.
            # train.py does it after fit for popen and torchrun processes; spawned workers never get
            # back there, so they do it here.
            dist.destroy_process_group()

    def optimizer_step(self, optimizer, closure, model=None, **kwargs):
        out = super().optimizer_step(optimizer, closure, model, **kwargs)
        step = self.lightning_module.trainer.global_step + 1  # this step is counted right after
        if self.check_sync_every and step % self.check_sync_every == 0:
            assert_in_sync(self.lightning_module, step)
        return out


StrategyRegistry.register("game_ddp", GameDDPStrategy, description="exact data-parallel games, processes by popen",
                          start_method="popen", override=True)
StrategyRegistry.register("game_ddp_spawn", GameDDPStrategy,
                          description="exact data-parallel games, processes by spawn", start_method="spawn",
                          override=True)
