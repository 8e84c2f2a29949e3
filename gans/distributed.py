"""Exact data-parallel training of two-player games.

ConOpt, JARE and SGA differentiate the game field xi = (grad_phi L_G, grad_theta L_D) again with
``torch.autograd.grad``. DistributedDataParallel averages only gradients that flow through
``.backward()``, so its reducer never sees these terms, and a per-process regulariser averaged
afterwards is mean_r(J_r^T xi_r), not the global J^T xi. Instead every model here averages the
detached field and then each Jacobian product across processes itself (``mean_across_processes``,
one flat all-reduce per reduction; see ``gans.game``) and writes ``.grad`` by hand, which is exact
for any method. The DDP wrapper then has nothing left to do: ``GameDDPStrategy`` is Lightning's DDP
strategy without it (no gradient buckets, no ``find_unused_parameters`` graph walk).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy, StrategyRegistry
from torch import Tensor


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def block(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s part of n items: contiguous blocks in rank order, sizes within one."""
    return slice(n * rank // world, n * (rank + 1) // world)


def mean_across_processes(tensors: list[Tensor]) -> list[Tensor]:
    """The average over processes of each tensor, with one all-reduce of one flat buffer."""
    if not tensors:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    return [chunk.view_as(t) for chunk, t in zip(flat.split([t.numel() for t in tensors]), tensors)]


def broadcast_module_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every process (what the DDP wrapper does when
    it is built), one flat broadcast per dtype."""
    tensors = [*module.parameters(), *module.buffers()]
    for dtype in dict.fromkeys(t.dtype for t in tensors):  # the same order on every process (a set's is not)
        group = [t for t in tensors if t.dtype == dtype]
        flat = torch.cat([t.detach().reshape(-1) for t in group])
        dist.broadcast(flat, src)
        with torch.no_grad():
            for chunk, t in zip(flat.split([t.numel() for t in group]), group):
                t.copy_(chunk.view_as(t))


def assert_in_sync(module: torch.nn.Module, iteration: int) -> None:
    """Raise on every process if the processes' parameters differ (compares float64 checksums)."""
    params = [p.detach() for p in module.parameters()]
    local = torch.stack([p.double().sum() for p in params] + [p.double().square().sum() for p in params])
    gathered = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, local)
    spread = max(float((g - gathered[0]).abs().max()) for g in gathered)
    if spread > 0:
        raise RuntimeError(f"iteration {iteration}: the processes' parameters have drifted apart (largest checksum "
                           f"difference {spread:.3g}); every process must apply the same update. A model that "
                           f"writes .grad without gans.distributed.mean_across_processes does this.")


class GameDDPStrategy(DDPStrategy):
    """Lightning's DDP (process launch, process groups, SLURM/torchrun environments, samplers,
    metric reduction) without the DistributedDataParallel wrapper, whose reducer cannot see the
    gradients these models take with ``autograd.grad``: the models average across processes
    themselves (see the module docstring). Names: ``game_ddp``, ``game_ddp_spawn``.

    Args:
        check_sync_every: in debug runs, check every this many iterations that all processes hold
            the same parameters (one small all-gather); 0 never checks.
    """

    def __init__(self, *args, check_sync_every: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.check_sync_every = check_sync_every

    def configure_ddp(self) -> None:
        broadcast_module_state(self.model)

    def teardown(self) -> None:
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
