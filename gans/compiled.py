"""Each method's update direction as one pure function of the parameters, for torch.compile.

``gans.game`` defines the directions on autograd graphs (``create_graph=True``), which torch.compile
cannot trace: AOTAutograd has no double backward. Here the same formulas are written with
torch.func: the field is ``grad`` of the losses, H^T v comes from the ``vjp`` of the field and H v
from its ``jvp``, so a whole direction is a function of (parameters, real batch, z) that compiles
into one graph. Compiled, this is faster where per-operation overhead dominates the iteration
(ConOpt's and JARE's iterations 2.4 x and 2.5 x on the 4 x 16 ring MLPs), less so where matrix
products do; on the 32x32 DCGAN JARE gains 1.2 x and simultaneous GD loses 1.4 x
(docs/benchmarks.md). ``tests/test_compiled.py`` holds every rule equal to ``gans.game``.

Parameters are dicts ``{name: tensor}`` as ``torch.func.functional_call`` takes them; a
*direction rule* maps (xi_g, xi_d, products) to (u_g, u_d, stats), where ``products.ht(v_g, v_d)``
returns H^T v and ``products.hv(v_g, v_d)`` returns H v, both as (generator part, discriminator
part). A rule that needs only the off-diagonal blocks (JARE) says so with ``cross=True`` and gets
``products.cross(v_g, v_d)`` = (H21^T v_d, H12^T v_g) instead: the vjps of each player's field as a
function of the other player's parameters, which skip the diagonal blocks that a vjp of the whole
field would compute and the compiler could not drop (113 instead of 152 matrix products on the
4 x 256 ring nets).
One process only: on several processes the products need all-reduces between them (``reduce``).
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp

from gans.distributed import rank_and_world
from gans.losses import LossFn, is_zero_sum

Params = dict[str, Tensor]
Product = Callable[[Params, Params], tuple[Params, Params]]


class Products(NamedTuple):
    """Products with the field's Jacobian H at the step's parameters: ``ht`` and ``hv`` for a rule
    with ``cross=False``, ``cross`` for one with ``cross=True`` (the others are None)."""

    ht: Product | None = None
    hv: Product | None = None
    cross: Product | None = None


class Rule(NamedTuple):
    """A method's direction, (xi_g, xi_d, products) -> (u_g, u_d, stats), and which products it uses."""

    direction: Callable[[Params, Params, Products], tuple[Params, Params, dict[str, Tensor]]]
    cross: bool = False


def axpy(alpha, x: Params, y: Params) -> Params:
    """y + alpha * x, per entry."""
    return {k: y[k] + alpha * x[k] for k in y}


def half_sq_norm(*parts: Params) -> Tensor:
    return 0.5 * sum((t * t).sum() for part in parts for t in part.values())


# -- direction rules: the formulas of gans.game, one per method ---------------------------------


simultaneous = Rule(lambda xi_g, xi_d, products: (xi_g, xi_d, {}))  # u = xi


def consensus(gamma: float) -> Rule:
    """ConOpt: u = xi + gamma * H^T xi."""
    def rule(xi_g, xi_d, products):
        corr_g, corr_d = products.ht(xi_g, xi_d)
        return axpy(gamma, corr_g, xi_g), axpy(gamma, corr_d, xi_d), {"reg/consensus": half_sq_norm(xi_g, xi_d)}
    return Rule(rule)


def jare(gamma: float) -> Rule:
    """JARE: u_phi = xi_phi + gamma * H21^T xi_theta, u_theta = xi_theta + gamma * H12^T xi_phi
    (the off-diagonal blocks only: ``cross``)."""
    def rule(xi_g, xi_d, products):
        corr_g, corr_d = products.cross(xi_g, xi_d)
        stats = {"reg/generator": half_sq_norm(xi_d), "reg/discriminator": half_sq_norm(xi_g)}
        return axpy(gamma, corr_g, xi_g), axpy(gamma, corr_d, xi_d), stats
    return Rule(rule, cross=True)


def sga(lam: float, align: bool, align_dim: int, eps: float = 0.1) -> Rule:
    """SGA: u = xi + lam * A^T xi with A^T xi = (H^T xi - H xi) / 2; with ``align`` the sign of lam
    is sign(<xi, H^T xi> <A^T xi, H^T xi> / align_dim + eps)."""
    def rule(xi_g, xi_d, products):
        (ht_g, ht_d), (h_g, h_d) = products.ht(xi_g, xi_d), products.hv(xi_g, xi_d)
        at_g, at_d = ({k: (a[k] - b[k]) / 2 for k in a} for a, b in ((ht_g, h_g), (ht_d, h_d)))
        weight = torch.tensor(float(lam))
        if align:
            def dot(a, b):
                return sum((a[k] * b[k]).sum() for k in a)
            alignment = (dot(xi_g, ht_g) + dot(xi_d, ht_d)) * (dot(at_g, ht_g) + dot(at_d, ht_d))
            weight = abs(lam) * torch.sign(alignment / align_dim + eps)
        return axpy(weight, at_g, xi_g), axpy(weight, at_d, xi_d), {"sga/lambda": weight}
    return Rule(rule)


# -- the whole step -----------------------------------------------------------------------------


def step_function(generator: nn.Module, discriminator: nn.Module, loss_fn: LossFn, zero_sum: bool, rule: Rule,
                  flat_update: bool = False, joint_d: bool = False):
    """f(pg, pd, real, z) -> (loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats): the field at the given
    parameters and the rule's direction, a pure function that torch.compile can compile. With
    ``flat_update`` each player's u is one vector in parameter order (``gans.flat``'s layout), so
    the concatenation fuses into the kernels that compute u; with ``joint_d`` D sees the real and
    generated batches as one (``TwoPlayerGAN``'s ``discriminator_pass``)."""
    def losses(pg: Params, pd: Params, real: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        fake = functional_call(generator, pg, (z,))
        if joint_d:
            logits = functional_call(discriminator, pd, (torch.cat([real, fake]),)).reshape(-1)
            return loss_fn(logits[:real.shape[0]], logits[real.shape[0]:])
        return loss_fn(functional_call(discriminator, pd, (real,)).reshape(-1),
                       functional_call(discriminator, pd, (fake,)).reshape(-1))

    def loss_of(index: int, real: Tensor, z: Tensor):
        """(pg, pd) -> (L_G or L_D, both losses): a function for ``grad(..., has_aux=True)``."""
        def f(a: Params, b: Params):
            both = losses(a, b, real, z)
            return both[index], both
        return f

    def field(pg: Params, pd: Params, real: Tensor, z: Tensor):
        """((xi_g, xi_d), (loss_g, loss_d)); one gradient of L_D for both players in zero-sum games."""
        if zero_sum:
            (g, d), both = grad(loss_of(1, real, z), argnums=(0, 1), has_aux=True)(pg, pd)
            return ({k: -v for k, v in g.items()}, d), both
        xi_g, both = grad(loss_of(0, real, z), argnums=0, has_aux=True)(pg, pd)
        xi_d, _ = grad(loss_of(1, real, z), argnums=1, has_aux=True)(pg, pd)
        return (xi_g, xi_d), both

    def cross_field(pg: Params, pd: Params, real: Tensor, z: Tensor):
        """((xi_g, xi_d), cross, (loss_g, loss_d)): each player's field as a function of the other
        player's parameters, whose vjps are the off-diagonal products (H21^T v_d, H12^T v_g)."""
        def xi_d_of(a: Params):  # (xi_d, both losses) at generator parameters a
            return grad(loss_of(1, real, z), argnums=1, has_aux=True)(a, pd)

        def xi_g_of(b: Params):  # xi_g at discriminator parameters b
            return grad(loss_of(0, real, z), argnums=0, has_aux=True)(pg, b)[0]

        xi_d, h21t, both = vjp(xi_d_of, pg, has_aux=True)
        xi_g, h12t = vjp(xi_g_of, pd)
        return (xi_g, xi_d), lambda v_g, v_d: (h21t(v_d)[0], h12t(v_g)[0]), both

    def step(pg: Params, pd: Params, real: Tensor, z: Tensor):
        if rule.cross:
            (xi_g, xi_d), cross, (loss_g, loss_d) = cross_field(pg, pd, real, z)
            products = Products(cross=cross)
        else:
            (xi_g, xi_d), h_t, (loss_g, loss_d) = vjp(lambda a, b: field(a, b, real, z), pg, pd, has_aux=True)

            def hv(v_g: Params, v_d: Params) -> tuple[Params, Params]:
                return jvp(lambda a, b: field(a, b, real, z)[0], (pg, pd), (v_g, v_d))[1]

            products = Products(ht=lambda v_g, v_d: h_t((v_g, v_d)), hv=hv)
        u_g, u_d, stats = rule.direction(xi_g, xi_d, products)
        if flat_update:
            u_g, u_d = (torch.cat([t.reshape(-1) for t in u.values()]) for u in (u_g, u_d))
        return loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats

    return step


class CompiledStep:
    """``compile_step`` for a TwoPlayerGAN while it fits: the compiled step function of its
    ``functional_rule`` and the trainable parameters it reads (detached views, so the optimizer's
    in-place updates show through). Raises ``ValueError`` naming every reason it cannot apply."""

    def __init__(self, module):
        rule, problems = module.functional_rule(), []
        if rule is None:
            problems.append(f"{type(module).__name__} with these options has no compiled step (alternating updates "
                            f"or its own training step)")
        if rank_and_world()[1] > 1:
            problems.append("it runs on one process (the products of several need all-reduces between them)")
        if any(True for net in (module.generator, module.discriminator) for _ in net.buffers()):
            problems.append("the networks have buffers (BatchNorm statistics, spectral-norm vectors), which the "
                            "functional step does not update")
        if str(module.trainer.precision) not in ("32-true", "64-true", "32", "64"):
            problems.append(f"precision {module.trainer.precision!r} is not float32/float64")
        if problems:
            raise ValueError("compile_step=True cannot be used: " + "; ".join(problems) +
                             ". Pass --model.compile_step false to train on the eager path.")
        self.params = [{n: p.detach() for n, p in net.named_parameters() if p.requires_grad}
                       for net in (module.generator, module.discriminator)]
        self.flat_update = module._flat is not None  # the optimizer steps flat buffers: hand it flat vectors
        fn = step_function(module.generator, module.discriminator, module.loss_fn, is_zero_sum(module.loss_name),
                           rule, self.flat_update, bool(module._joint_d))
        # Every model's step is a new closure of the same code, and torch.compile keeps at most
        # ``recompile_limit`` (8) versions per code: the ninth model fitted in one process would run
        # uncompiled. A clean state before an unrelated compilation is what PyTorch recommends
        # (other compiled functions of the process recompile on their next call, from the disk cache).
        torch.compiler.reset()
        # On CPU, a C++ wrapper calls the compiled kernels instead of Python: the graph of a small
        # network is hundreds of kernel calls, and this makes its call 1.2-1.3 x faster.
        self.fn = torch.compile(fn, options={"cpp_wrapper": True} if module.device.type == "cpu" else None)

    def __call__(self, real: Tensor, z: Tensor):
        """(loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats) with lists in parameter order (u_g and u_d
        flat vectors when the optimizer steps flat buffers), or None (with a warning) when
        compilation fails: the eager path computes the same."""
        try:
            with torch.no_grad():  # torch.func differentiates inside; nothing outside needs a graph
                loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats = self.fn(*self.params, real, z)
        except Exception as err:  # noqa: BLE001 (any compiler failure: the eager path computes the same)
            warnings.warn(f"compile_step: torch.compile failed ({type(err).__name__}: {err}); training continues "
                          f"on the eager path")
            return None
        if not self.flat_update:
            u_g, u_d = list(u_g.values()), list(u_d.values())
        return loss_g, loss_d, list(xi_g.values()), list(xi_d.values()), u_g, u_d, stats
