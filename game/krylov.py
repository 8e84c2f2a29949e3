"""Krylov solvers for A x = b on lists of tensors, with A given only as products ``matvec(v)``.

Competitive gradient descent solves a system in the game Jacobian's blocks, whose products are
backward passes: the matrix is never formed. Conjugate gradient for symmetric positive definite
A (zero-sum games), GMRES for any A (the other losses). Both work on lists of tensors (one per
parameter), start from ``x0`` (a warm start) and stop at ``||b - A x|| <= tol * ||b||`` or after
``max_iter`` products. Every operation is out of place, so a solve keeps its autograd graph when
the products do (the Jacobian of the solution, for the spectrum of the method). Written here
because scipy's solvers work on numpy vectors, and torch has none for a product-only operator
on lists of tensors.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from game.algebra import axpy, dot, norm

Vector = list[Tensor]
MatVec = Callable[[Vector], Vector]
#: how the processes of a distributed solve agree on whether to go on (``game.algebra.agreed_flag``):
#: every stopping test gates the next product's all-reduce, so all must take the same one
Agree = Callable[[bool], bool]


def alone(flag: bool) -> bool:
    """``Agree`` of a solve on one process: its own decision."""
    return flag


class Solve(NamedTuple):
    """A solution, the products it took and its relative residual ||b - A x|| / ||b|| (tensors with
    one entry per member for stacked systems)."""

    x: Vector
    iterations: int
    residual: float


def _residual(matvec: MatVec, b: Vector, x0: Vector | None) -> tuple[Vector, Vector, int]:
    if x0 is None:
        return [torch.zeros_like(t) for t in b], list(b), 0
    return list(x0), axpy(-1.0, matvec(x0), b), 1


def conjugate_gradient(matvec: MatVec, b: Vector, x0: Vector | None = None, *, tol: float = 1e-6,
                       max_iter: int = 50, agree: Agree = alone) -> Solve:
    """x = A^-1 b for symmetric positive definite A (Hestenes & Stiefel 1952)::

        r = b - A x,  p = r;  repeat:  alpha = <r, r> / <p, A p>,  x += alpha p,  r -= alpha A p,
                                        p = r + (<r_new, r_new> / <r, r>) p
    """
    b_norm = float(norm(b).detach()) or 1.0
    x, r, products = _residual(matvec, b, x0)
    rr = dot(r, r)
    p = r
    while agree(float(rr.detach()) ** 0.5 > tol * b_norm and products < max_iter):
        ap = matvec(p)
        products += 1
        alpha = rr / dot(p, ap)
        x, r = axpy(alpha, p, x), axpy(-alpha, ap, r)
        rr_new = dot(r, r)
        p = axpy(rr_new / rr, p, r)
        rr = rr_new
    return Solve(x, products, float(rr.detach()) ** 0.5 / b_norm)


def conjugate_gradient_members(matvec: MatVec, b: Vector, x0: Vector | None = None, *, tol: float = 1e-6,
                               max_iter: int = 50, agree: Agree = alone) -> Solve:
    """``conjugate_gradient`` on stacked systems (``gans.sweep``: one system per member along the
    leading axis, A block-diagonal over members), each member stopping where its own solve would:
    once its residual is small it takes no further step (alpha = 0) while the others go on. A CG
    on the whole stacked system would couple the members through its inner products and be exact
    only at convergence. ``iterations`` and ``residual`` are tensors with one entry per member."""
    b_norm = norm(b, members=True)
    b_norm = torch.where(b_norm > 0, b_norm, torch.ones_like(b_norm))
    x, r, products = _residual(matvec, b, x0)
    rr = dot(r, r, members=True)
    active = rr.sqrt() > tol * b_norm  # a member with a non-finite residual (a diverged game) takes no step
    iterations = torch.full_like(rr, products)
    p = r
    while agree(bool(active.any()) and products < max_iter):
        ap = matvec(p)
        products += 1
        iterations += active
        alpha = torch.where(active, rr / dot(p, ap, members=True), 0.0)
        x, r = axpy(alpha, p, x), axpy(-alpha, ap, r)
        rr_new = dot(r, r, members=True)
        p = axpy(torch.where(active, rr_new / rr, 0.0), p, r)
        rr = torch.where(active, rr_new, rr)
        active = active & (rr.sqrt() > tol * b_norm)
    return Solve(x, iterations, rr.sqrt() / b_norm)


def gmres(matvec: MatVec, b: Vector, x0: Vector | None = None, *, tol: float = 1e-6, max_iter: int = 50,
          agree: Agree = alone) -> Solve:
    """x = A^-1 b for any invertible A (Saad & Schultz 1986), without restarts: the Arnoldi basis
    V of the Krylov space of r0 = b - A x0 and the Hessenberg matrix h with A V_k = V_{k+1} h, then
    x = x0 + V_k y with y = argmin ||beta e_1 - h y|| (a least-squares problem of size k + 1 x k)."""
    b_norm = float(norm(b).detach()) or 1.0
    x, r, products = _residual(matvec, b, x0)
    beta = norm(r) if r else torch.zeros(())
    if not agree(float(beta.detach()) > tol * b_norm and products < max_iter):
        return Solve(x, products, float(beta.detach()) / b_norm)
    basis, rows = [[t / beta for t in r]], []
    residual = float(beta.detach())
    y, go_on = None, True
    while go_on:
        w = matvec(basis[-1])
        products += 1
        column = []
        for v in basis:  # modified Gram-Schmidt
            coefficient = dot(w, v)
            w = axpy(-coefficient, v, w)
            column.append(coefficient)
        column.append(norm(w))
        rows.append(column)
        k, zero = len(rows), beta.new_zeros(())
        h = torch.stack([torch.stack([col[i] if i < len(col) else zero for col in rows]) for i in range(k + 1)])
        rhs = torch.cat([beta.reshape(1), beta.new_zeros(k)]).reshape(-1, 1)
        y = torch.linalg.lstsq(h, rhs).solution
        residual = float(torch.linalg.vector_norm(rhs - h @ y).detach())
        invariant = float(column[-1].detach()) <= 1e-14 * b_norm  # the Krylov space is invariant: y is exact
        go_on = agree(not invariant and residual > tol * b_norm and products < max_iter)
        if go_on:
            basis.append([t / column[-1] for t in w])
    for j in range(len(rows)):
        x = axpy(y[j, 0], basis[j], x)
    return Solve(x, products, residual / b_norm)


class _ImplicitSolve(torch.autograd.Function):
    """The solution x* of A(params) x = b as a differentiable function of b and the parameters
    (the implicit function theorem): for a cotangent w, lambda = A^-T w; b gets lambda and the
    parameters get -grad_params <lambda, A(params) x*>. A truncated or early-stopped Krylov solve
    has no such derivative (at b = 0 it takes no step at all), so this is what gives a method
    built on a solve its Jacobian."""

    @staticmethod
    def forward(ctx, spec, *tensors):
        n_b = spec["n_b"]
        ctx.spec, ctx.n_b = spec, n_b
        ctx.save_for_backward(*tensors)
        return tuple(t.detach().clone() for t in spec["x"])

    @staticmethod
    def backward(ctx, *w):
        spec, tensors = ctx.spec, ctx.saved_tensors
        params = list(tensors[ctx.n_b:])
        lam = spec["solve"](spec["matvec_t"], [t.detach() for t in w]).x
        with torch.enable_grad():
            applied = spec["matvec_graph"]([t.detach() for t in spec["x"]])
            grads = torch.autograd.grad(applied, params, grad_outputs=lam, retain_graph=True, allow_unused=True)
        grads = [None if g is None else -g for g in grads]
        return (None, *lam, *grads)


def implicit_solution(x: Vector, b: Vector, params: list[Tensor], matvec_graph: MatVec, matvec_t: MatVec,
                      solve: Callable[[MatVec, Vector], Solve]) -> Vector:
    """``x`` (a solve of A x = b, detached) made differentiable in ``b`` and ``params``:
    ``matvec_graph`` applies A with its graph to the parameters, ``matvec_t`` applies A^T
    (detached), ``solve`` solves a system with it."""
    spec = {"n_b": len(b), "x": x, "matvec_graph": matvec_graph, "matvec_t": matvec_t, "solve": solve}
    return list(_ImplicitSolve.apply(spec, *b, *params))
