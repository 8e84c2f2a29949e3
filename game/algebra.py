"""The algebra of two-player games, as small pure functions.

Notation (descent convention: each player minimises its own loss)::

    phi   generator parameters,   theta  discriminator parameters,   x = (phi, theta)
    xi(x) = (grad_phi L_G, grad_theta L_D)          the game's vector field
    H(x)  = d xi / d x = [[H11, H12], [H21, H22]]    its Jacobian (not symmetric)

Both players step ``x <- x - eta * u(x)`` where ``u`` is the method's update
direction (``game.methods``: each method is a small component built on these
functions). A *field* here is a list of tensors, one per parameter, that still
carries its autograd graph (built with ``create_graph=True``), so products with
H are one more backward pass:

    vjp(field, params, v) = H^T v = grad_x <xi, v>
    jvp(field, params, v) = H v       (double-backward trick)

Stacked games (``gans.sweep``: N independent games whose parameters lie along a leading member
axis) use the same functions: their Jacobian is block-diagonal over members, so every product
separates; ``dot`` and ``norm`` with ``members=True`` give one value per member, and ``axpy``
takes one coefficient per member (a vector of length N).

``reduce`` averages a list of tensors across processes and is the identity on a
single process. Every method reduces the detached field and each product, so the
same functions give the exact global-batch update under data parallelism (the
products of the global field are means of local products). A decision taken from
reduced values (a solver's stopping test, SGA's sign) goes through ``agreed``: the
first process's value on every process (``runtime.distributed.ProcessMean.agree``).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
from torch import Tensor

Tensors = Sequence[Tensor]
Reduce = Callable[[list[Tensor]], list[Tensor]]


def no_reduce(tensors: list[Tensor]) -> list[Tensor]:
    """Single-process ``reduce``: nothing to average."""
    return tensors


def agreed(reduce: Reduce, value: Tensor) -> Tensor:
    """``value`` as every process will act on it: under a ``reduce`` across processes that can
    agree (``reduce.agree``), the first process's; otherwise ``value`` itself."""
    agree = getattr(reduce, "agree", None)
    return value if agree is None else agree(value)


def agreed_flag(reduce: Reduce, flag: bool, like: Tensor) -> bool:
    """A yes/no decision taken alike on every process (``agreed``); ``like`` is a tensor on the
    device the processes exchange values on."""
    if getattr(reduce, "agree", None) is None:
        return flag
    return bool(agreed(reduce, like.new_tensor(1.0 if flag else 0.0)))


class Field(NamedTuple):
    """The game at one point on one batch: both losses, the field xi = (xi_phi, xi_theta) and the
    parameters it was taken at. xi keeps its graph when it was built with ``create_graph``; a
    player whose part was not asked for (one player's half of an alternating iteration) has None."""

    loss_g: Tensor | None
    loss_d: Tensor | None
    xi_g: list[Tensor] | None
    xi_d: list[Tensor] | None
    params_g: list[Tensor]
    params_d: list[Tensor]


class Update(NamedTuple):
    """A method's update direction for both players (None for a player it was not asked for),
    scalars to log, and the method state the step leaves behind (``Method.commit`` keeps it once
    the step is applied; None for stateless methods)."""

    g: list[Tensor] | None
    d: list[Tensor] | None
    stats: dict[str, Tensor]
    state: object = None


class Step(NamedTuple):
    """What one training step computes: both losses, the field, the update direction (lists in
    parameter order, or one flat vector per player) and the method's statistics."""

    loss_g: Tensor | None
    loss_d: Tensor | None
    xi_g: list[Tensor] | None
    xi_d: list[Tensor] | None
    u_g: list[Tensor] | Tensor | None
    u_d: list[Tensor] | Tensor | None
    stats: dict[str, Tensor]


# -- building blocks ---------------------------------------------------------------------------


def flatten(a: Tensors) -> Tensor:
    """The tensors of a list as one vector (differentiable: its backward splits the gradient)."""
    return torch.cat([t.reshape(-1) for t in a])


def flatten_members(a: Tensors) -> Tensor:
    """The tensors of a stacked list as one row per member, (N, entries of one member)."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in a], dim=1)


def dot(a: Tensors, b: Tensors, members: bool = False) -> Tensor:
    """<a, b> summed over all tensors of the two lists; with ``members``, over all but the leading
    member axis (one inner product per member, shape (N,)).

    One product of two concatenated vectors rather than a product and a sum per tensor: on small
    networks each operation's dispatch costs more than its arithmetic. (The Jacobian products do
    not form this product at all: ``vjp`` seeds the backward pass with v.)"""
    if len(a) != len(b):
        raise ValueError(f"dot of lists of different lengths ({len(a)} and {len(b)})")
    if not a:
        return torch.zeros(())
    if members:
        return torch.linalg.vecdot(flatten_members(a), flatten_members(b))
    return torch.dot(flatten(a), flatten(b))


def sq_norm(a: Tensors, members: bool = False) -> Tensor:
    return dot(a, a, members)


def norm(a: Tensors, members: bool = False) -> Tensor:
    """||a||_2 over all tensors of the list (with ``members``, one norm per member), for values that
    are not differentiated (statistics to log): one read of each tensor and no concatenated copy of
    the parameters (docs/benchmarks.md, "Where the time goes")."""
    if not a:
        return torch.zeros(())
    if members:
        return torch.linalg.vector_norm(flatten_members(a), dim=1)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(a))))


def detach(a: Tensors) -> list[Tensor]:
    return [t.detach() for t in a]


def axpy(alpha, x: Tensors, y: Tensors) -> list[Tensor]:
    """y + alpha * x, elementwise over the lists (alpha a number or a scalar tensor, or for stacked
    lists a vector with one coefficient per member)."""
    if len(x) != len(y):
        raise ValueError(f"axpy of lists of different lengths ({len(x)} and {len(y)})")
    if not x:
        return []
    if isinstance(alpha, Tensor) and alpha.ndim == 1:
        return [b + per_member(alpha, a) * a for a, b in zip(x, y)]
    # foreach: one dispatch for the whole list, differentiable like the per-tensor form
    if isinstance(alpha, Tensor):
        return list(torch._foreach_add(list(y), torch._foreach_mul(list(x), alpha)))
    return list(torch._foreach_add(list(y), list(x), alpha=alpha))


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """One value per member (N,) shaped to broadcast against a stacked tensor (N, ...)."""
    return values.reshape(-1, *([1] * (like.ndim - 1)))


def grad(output: Tensor | list[Tensor], inputs: Tensors, *, grad_outputs: list[Tensor] | None = None,
         create_graph: bool = False) -> list[Tensor]:
    """d output / d inputs, with zeros for inputs the output does not depend on; for a list of
    outputs with ``grad_outputs`` v, sum_i v_i^T d output_i / d inputs.

    The graph is always retained: a field is differentiated several times.
    """
    grads = torch.autograd.grad(output, inputs, grad_outputs=grad_outputs, retain_graph=True,
                                create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, inputs)]


def vector_field(
    loss_g: Tensor, loss_d: Tensor, params_g: Tensors, params_d: Tensors, *, create_graph: bool = False, zero_sum: bool = False
) -> tuple[list[Tensor], list[Tensor]]:
    """xi = (grad_phi L_G, grad_theta L_D).

    With ``zero_sum`` (L_G = -L_D) one backward pass of L_D gives both players'
    parts: xi = (-grad_phi L_D, grad_theta L_D).
    """
    if zero_sum:
        both = grad(loss_d, [*params_g, *params_d], create_graph=create_graph)
        g, d = both[: len(params_g)], both[len(params_g) :]
        # without a graph, one foreach call negates every tensor (a small network's step feels each op)
        return ([-t for t in g] if create_graph or not g else list(torch._foreach_neg(g))), d
    return grad(loss_g, params_g, create_graph=create_graph), grad(loss_d, params_d, create_graph=create_graph)


def vjp(field: Tensors, params: Tensors, v: Tensors, *, create_graph: bool = False) -> list[Tensor]:
    """H^T v = grad_x <xi, v>, where H = d field / d params.

    One backward pass of the field seeded with v: the same numbers as differentiating <xi, v>,
    without forming that product (it needs a concatenated copy of both lists). Entries of the field without a graph (a parameter that
    does not reach its own loss) contribute nothing.
    """
    pairs = [(f, t) for f, t in zip(field, v, strict=True) if f.requires_grad]
    if not pairs:
        return [torch.zeros_like(p) for p in params]
    return grad([f for f, _ in pairs], params, grad_outputs=[t for _, t in pairs], create_graph=create_graph)


def vjp_and_jvp(
    field: Tensors, params: Tensors, v: Tensors, *, create_graph: bool = False
) -> tuple[list[Tensor], list[Tensor]]:
    """(H^T v, H v) in two backward passes (double-backward trick).

    w(u) = H^T u = grad_x <xi, u> is linear in u, so its vjp with v, grad_u <w(u), v>,
    is H v for any u; taking u = v makes the first pass yield H^T v as well.
    """
    u = [t.detach().clone().requires_grad_(True) for t in v]
    ht_u = vjp(field, params, u, create_graph=True)
    h_v = vjp(ht_u, u, v, create_graph=create_graph)
    return (ht_u if create_graph else detach(ht_u)), h_v


def jvp(field: Tensors, params: Tensors, v: Tensors, *, create_graph: bool = False) -> list[Tensor]:
    """H v, the Jacobian-vector product of the field."""
    return vjp_and_jvp(field, params, v, create_graph=create_graph)[1]


def ht_field(field: Tensors, params: Tensors, value: Tensors, differentiable: bool = False) -> list[Tensor]:
    """H^T xi for a field xi = ``field`` whose (reduced, detached) value is ``value``.

    Training takes the product against the value (``vjp``), which on several processes is the
    global field. ``differentiable`` instead takes grad(1/2 ||xi||^2) with its graph: the same
    number on one process, and a complete graph (d value / dx included) to differentiate again.
    """
    if differentiable:
        return grad(0.5 * sq_norm(field), params, create_graph=True)
    return vjp(field, params, value)


def reduced(reduce: Reduce, *parts: list[Tensor]) -> list[list[Tensor]]:
    """Reduce several lists with one call (one flat all-reduce), then split them again."""
    flat = reduce([t for part in parts for t in part])
    out, start = [], 0
    for part in parts:
        out.append(flat[start : start + len(part)])
        start += len(part)
    return out
