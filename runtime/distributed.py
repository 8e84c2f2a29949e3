"""Exact data-parallel training of two-player games.

ConOpt, JARE and SGA differentiate the game field xi = (grad_phi L_G, grad_theta L_D) again with
``torch.autograd.grad``. DistributedDataParallel averages only gradients that flow through
``.backward()``, so its reducer never sees these terms, and a per-process regulariser averaged
afterwards is mean_r(J_r^T xi_r), not the global J^T xi. Instead every model here averages the
detached field and then each Jacobian product across processes itself (``mean_across_processes``,
one flat all-reduce per reduction; see ``game.algebra``) and writes ``.grad`` by hand, which is exact
for any method. The DDP wrapper then has nothing left to do: ``gans.strategy.GameDDPStrategy`` is
Lightning's DDP strategy without it (no gradient buckets, no ``find_unused_parameters`` graph walk).
Plain ``torch.distributed``: a loop of one's own uses the same averaging.
"""
from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from typing import Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

T = TypeVar("T")


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def block(n: int, rank: int, world: int) -> slice:
    """Process ``rank``'s part of n items: contiguous blocks in rank order, sizes within one."""
    return slice(n * rank // world, n * (rank + 1) // world)


class ProcessMean:
    """The ``reduce`` of a method on several processes (``game.algebra``): ``reduce(tensors)`` is the
    average over processes of each tensor, one all-reduce of one flat buffer; ``reduce.agree(value)``
    is rank 0's ``value`` on every process, for a decision computed from reduced values (a solver's
    stopping test, SGA's sign) that must be the same everywhere even where processes round
    differently (mixed GPU types, non-deterministic kernels): a solver loop that ran one product
    longer on one process would wait in an all-reduce the others never enter."""

    def __call__(self, tensors: list[Tensor]) -> list[Tensor]:
        if not tensors:
            return tensors
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        return [chunk.view_as(t) for chunk, t in zip(flat.split([t.numel() for t in tensors]), tensors)]

    @staticmethod
    def agree(value: Tensor) -> Tensor:
        out = value.detach().clone()
        dist.broadcast(out, 0)
        return out


#: the average over processes of each tensor of a list (``ProcessMean``)
mean_across_processes = ProcessMean()


_control: dict = {}


def control_group():
    """A gloo process group for the host's decisions (whether any process was interrupted): a CPU
    all-reduce that never waits for a GPU's queue, where one through NCCL would synchronise the
    host with the GPU at every call. None where the default group is gloo already. Created
    collectively at its first use, which every process reaches at the same point."""
    if not dist.is_initialized() or dist.get_world_size() == 1 or dist.get_backend() == "gloo":
        return None
    if _control.get("world") is not dist.group.WORLD:
        _control.update(world=dist.group.WORLD, group=dist.new_group(backend="gloo"))
    return _control["group"]


def process_maximum(value: int) -> int:
    """The largest of the processes' ``value`` (one tiny all-reduce of a CPU tensor over gloo: the
    default group where it is gloo, else ``control_group``); the value itself on one process."""
    if rank_and_world()[1] == 1:
        return int(value)
    t = torch.tensor([float(value)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=control_group())
    return int(t.item())


def from_rank0(compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 alone and its result on every process (pickled, one broadcast);
    if it raises, every process raises the same error, so none is left waiting for a result that
    will not come. Rank 0's decision is everyone's: what it finds in a cache, a file system that
    only it sees, a search only it runs. On one process: ``compute()``."""
    rank, world = rank_and_world()
    if world == 1:
        return compute()
    box: list = [None]
    error = None
    if rank == 0:
        try:
            box = [("ok", compute())]
        except BaseException as err:  # noqa: BLE001 (every process must hear of any failure, an interrupt too)
            error, box = err, [("error", (type(err), str(err)))]
    dist.broadcast_object_list(box, 0)
    kind, value = box[0]
    if kind == "ok":
        return value
    if error is not None:
        raise error
    raise rebuilt_error(*value)


def rebuilt_error(cls: type, message: str) -> BaseException:
    """Another process's error as this process raises it: the same class where it takes a message."""
    try:
        err = cls(message)
    except Exception:  # noqa: BLE001 (a class with other constructor arguments)
        return RuntimeError(f"{cls.__name__}: {message}")
    return err if isinstance(err, BaseException) else RuntimeError(message)


class FailureWatch:
    """Ends this process within about a second when another process of the run has failed.

    A process that fails alone (an error in its own step, a CUDA error on its GPU) leaves the
    others waiting in their next collective until its timeout (30 minutes by default). Each
    process therefore watches a key of the process group's store from a daemon thread; a failing
    process (``publish``) writes its error there and waits up to ``linger`` seconds for the others
    to see it; a watcher that sees another process's error prints it (rank 0) and ends its own
    process at once, since its main thread may be blocked in a collective that will never
    complete. Errors that every process raises together (the divergence guard, an error
    ``from_rank0`` shares) are published by each and end nothing early. Each fit watches keys of
    its own (a counter that every process advances alike), so a second fit in the same process
    group does not see the first one's failure.
    """

    _generation = itertools.count()

    def __init__(self, poll: float = 0.2, linger: float = 2.0, exit: Callable[[int], None] = os._exit):
        self.poll, self.linger, self._exit = poll, linger, exit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._store = None
        self.failing = False
        self.key = ""

    def start(self) -> None:
        rank, world = rank_and_world()
        store = default_store()
        if world == 1 or store is None:
            return
        self._store, self.rank, self.world = store, rank, world
        self.key = f"gan_dynamics/failure/{next(self._generation)}"
        self.failing = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="gan-dynamics failure watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread = None

    def publish(self, err: BaseException) -> None:
        """Tell the other processes that this one fails with ``err`` (then wait briefly for them to
        read it: the store lives in rank 0's process, which may be the one about to exit)."""
        if self._store is None or self._thread is None or self.failing:
            return
        self.failing = True
        message = " ".join(str(err).split()) or type(err).__name__
        try:
            self._store.set(self.key, f"{self.rank}\n{type(err).__name__}: {message}")
            heard = self._store.add(f"{self.key}/heard", 1)
            deadline = time.monotonic() + self.linger
            while heard < self.world and time.monotonic() < deadline:
                time.sleep(self.poll / 4)
                heard = self._store.add(f"{self.key}/heard", 0)
        except Exception:  # noqa: BLE001 (the store went away: the others have ended)
            return

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                if not self._store.check([self.key]):
                    continue
                if self.failing:
                    return
                rank, message = self._store.get(self.key).decode().split("\n", 1)
                self._store.add(f"{self.key}/heard", 1)
            except Exception:  # noqa: BLE001 (the store went away with rank 0: the run has ended)
                return
            if self._stop.is_set() or self.failing:
                return
            if self.rank == 0:
                print(f"error on rank {rank} of {self.world}: {message}; every process stops", file=sys.stderr,
                      flush=True)
            sys.stdout.flush()
            self._exit(1)
            return


def default_store():
    """The key-value store of the default process group (None where there is none)."""
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # noqa: BLE001 (a private helper of torch: without it, no watch)
        return None


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
                           f"writes .grad without runtime.distributed.mean_across_processes does this.")
