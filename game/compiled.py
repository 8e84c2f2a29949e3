"""A method's update direction as one pure function of the parameters, for torch.compile.

``game.algebra`` works on autograd graphs (``create_graph=True``), which torch.compile cannot trace:
AOTAutograd has no double backward. Here the field is ``torch.func.grad`` of the losses, H^T v
comes from the ``vjp`` of the field and H v from its ``jvp``, so a whole step is a function of
(parameters, real batch, z) that compiles into one graph; it pays where per-operation overhead
dominates an iteration (docs/benchmarks.md).

Parameters are dicts ``{name: tensor}`` as ``torch.func.functional_call`` takes them. Each method
of ``game.methods`` states its *rule* next to its eager direction: a map from (xi_g, xi_d,
products) to (u_g, u_d, stats), where ``products.ht(v_g, v_d)`` returns H^T v and
``products.hv(v_g, v_d)`` returns H v, both as (generator part, discriminator part). A rule that
needs only the off-diagonal blocks (JARE) says so with ``cross=True`` and gets
``products.cross(v_g, v_d)`` = (H21^T v_d, H12^T v_g) instead: the vjps of each player's field as a
function of the other player's parameters, which skip the diagonal blocks that a vjp of the whole
field would compute and the compiler could not drop. ``tests/test_compiled.py`` holds every rule
equal to the eager direction. One process only: on several processes the products need
all-reduces between them.
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from game.algebra import Step
from game.losses import LossFn

Params = dict[str, Tensor]
Product = Callable[[Params, Params], tuple[Params, Params]]


class Products(NamedTuple):
    """What a rule may use besides xi: products with the field's Jacobian H at the step's
    parameters (``ht`` and ``hv`` for a rule with ``cross=False``, ``cross`` for one with
    ``cross=True``; the others are None), the field at other parameters on the same batch
    (``field``) and the step's parameters (``params``)."""

    ht: Product | None = None
    hv: Product | None = None
    cross: Product | None = None
    field: Product | None = None
    params: tuple[Params, Params] | None = None


class Rule(NamedTuple):
    """A method's direction, (xi_g, xi_d, products) -> (u_g, u_d, stats), and which products it uses."""

    direction: Callable[[Params, Params, Products], tuple[Params, Params, dict[str, Tensor]]]
    cross: bool = False


def axpy(alpha, x: Params, y: Params) -> Params:
    """y + alpha * x, per entry."""
    return {k: y[k] + alpha * x[k] for k in y}


def half_sq_norm(*parts: Params) -> Tensor:
    return 0.5 * sum((t * t).sum() for part in parts for t in part.values())


# -- the whole step -----------------------------------------------------------------------------


def step_function(generator: nn.Module, discriminator: nn.Module, loss_fn: LossFn, zero_sum: bool, rule: Rule,
                  flat_update: bool = False, joint: bool = False):
    """f(pg, pd, real, z) -> Step: the field at the given parameters and the rule's direction, a
    pure function that torch.compile can compile. With
    ``flat_update`` each player's u is one vector in parameter order (``runtime.flat``'s layout), so
    the concatenation fuses into the kernels that compute u; with ``joint`` D sees the real and
    generated batches as one (``TwoPlayerGame.joint``: the resolved ``discriminator_pass``)."""
    def losses(pg: Params, pd: Params, real: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        fake = functional_call(generator, pg, (z,))
        if joint:
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
        def field_at(a: Params, b: Params) -> tuple[Params, Params]:
            return field(a, b, real, z)[0]

        if rule.cross:
            (xi_g, xi_d), cross, (loss_g, loss_d) = cross_field(pg, pd, real, z)
            products = Products(cross=cross, field=field_at, params=(pg, pd))
        else:
            (xi_g, xi_d), h_t, (loss_g, loss_d) = vjp(lambda a, b: field(a, b, real, z), pg, pd, has_aux=True)

            def hv(v_g: Params, v_d: Params) -> tuple[Params, Params]:
                return jvp(field_at, (pg, pd), (v_g, v_d))[1]

            products = Products(ht=lambda v_g, v_d: h_t((v_g, v_d)), hv=hv, field=field_at, params=(pg, pd))
        u_g, u_d, stats = rule.direction(xi_g, xi_d, products)
        if flat_update:
            u_g, u_d = (torch.cat([t.reshape(-1) for t in u.values()]) for u in (u_g, u_d))
        return Step(loss_g, loss_d, xi_g, xi_d, u_g, u_d, stats)

    return step


def stacked_step_function(generator: nn.Module, discriminator: nn.Module, loss_fn: LossFn, zero_sum: bool,
                          rule_of: Callable[[dict[str, Tensor]], Rule], own_data: bool = False, joint: bool = False):
    """f(pg, pd, real, z, hyper) -> Step for stacked games (``gans.sweep``): ``step_function``
    vmapped over members, whose parameters, codes z and hyperparameters ``hyper`` (values with one
    entry per member) lie along a leading axis, on one real batch that every member shares (or,
    with ``own_data``, each member's own along that axis). Each member's rule is ``rule_of`` its own
    hyperparameters, so every inner product, norm and sign inside it is the member's own;
    ``joint`` as in ``step_function``."""
    def member(pg: Params, pd: Params, real: Tensor, z: Tensor, hyper: dict[str, Tensor]) -> Step:
        return step_function(generator, discriminator, loss_fn, zero_sum, rule_of(hyper),
                             joint=joint)(pg, pd, real, z)
    return vmap(member, in_dims=(0, 0, 0 if own_data else None, 0, 0))


class CompiledStep:
    """``compile_step`` while a model fits: the compiled ``fn`` of a step function and the trainable
    parameters it reads (``params``: a dict per player of detached views, so the optimizer's in-place
    updates show through), called with ``extra`` after the batch. The model checks first that the
    step applies (``TwoPlayerGAN.compiled_step_problems``)."""

    def __init__(self, fn: Callable, params: list[Params], *, flat_update: bool, cpp_wrapper: bool,
                 extra: tuple = (), cuda_graphs: bool = False):
        self.params, self.extra = params, extra
        self.flat_update = flat_update  # the optimizer steps flat buffers: hand it flat vectors
        self.cuda_graphs = cuda_graphs
        # Every model's step is a new closure of the same code, and torch.compile keeps at most
        # ``recompile_limit`` (8) versions per code: the ninth model fitted in one process would run
        # uncompiled. A clean state before an unrelated compilation is what PyTorch recommends
        # (other compiled functions of the process recompile on their next call, from the disk cache).
        torch.compiler.reset()
        if cuda_graphs:
            # On a GPU a small network's step is hundreds of kernel launches, each costing more than its
            # arithmetic: a CUDA graph replays them as one. The parameters are updated in place, so
            # their addresses are static and the graph reads them where they are.
            self.fn = torch.compile(fn, mode="reduce-overhead")
            for tensor in (t for player in params for t in player.values()):
                torch._dynamo.mark_static_address(tensor)
        else:
            # On CPU, a C++ wrapper calls the compiled kernels instead of Python: the graph of a small
            # network is hundreds of kernel calls, and this makes its call faster (docs/benchmarks.md).
            self.fn = torch.compile(fn, options={"cpp_wrapper": True} if cpp_wrapper else None)

    @staticmethod
    def trainable(*nets: nn.Module) -> list[Params]:
        """Each network's trainable parameters, detached, by name."""
        return [{n: p.detach() for n, p in net.named_parameters() if p.requires_grad} for net in nets]

    def __call__(self, real: Tensor, z: Tensor) -> Step | None:
        """The step with lists in parameter order (u_g and u_d flat vectors when the optimizer steps
        flat buffers), or None (with a warning) when compilation fails: the eager path computes the same."""
        try:
            with torch.no_grad():  # torch.func differentiates inside; nothing outside needs a graph
                if self.cuda_graphs:
                    torch.compiler.cudagraph_mark_step_begin()
                step = self.fn(*self.params, real, z, *self.extra)
                if self.cuda_graphs:  # the next replay overwrites a graph's outputs; logging keeps some longer
                    step = _cloned(step)
        except Exception as err:  # noqa: BLE001 (any compiler failure: the eager path computes the same)
            warnings.warn(f"compile_step: torch.compile failed ({type(err).__name__}: {err}); training continues "
                          f"on the eager path")
            return None
        u_g, u_d = (step.u_g, step.u_d) if self.flat_update else (list(step.u_g.values()), list(step.u_d.values()))
        return step._replace(xi_g=list(step.xi_g.values()), xi_d=list(step.xi_d.values()), u_g=u_g, u_d=u_d)


def _cloned(tree):
    """A step's outputs (tensors in dicts and named tuples) copied out of a CUDA graph's memory."""
    if isinstance(tree, Tensor):
        return tree.clone()
    if isinstance(tree, dict):
        return {k: _cloned(v) for k, v in tree.items()}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_cloned(v) for v in tree))
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cloned(v) for v in tree)
    return tree
