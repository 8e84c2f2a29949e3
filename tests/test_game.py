"""Each method's update direction against its formula, with H built explicitly, and against finite
differences (float64)."""
from __future__ import annotations

import pytest
import torch

from game import algebra
from game.methods import SymplecticGradientAdjustment
from gans import JARE, SGA, ConOpt, Vanilla
from tests.helpers import flat, mlp_gan, update_jacobian


def explicit_jacobian(module, real, z):
    """xi and H = d xi / d x built row by row from scalar gradients: independent of the vjp/jvp code."""
    params = module.params_g + module.params_d
    loss_g, loss_d = module(real, z)
    xi = flat(torch.autograd.grad(loss_g, module.params_g, create_graph=True)
              + torch.autograd.grad(loss_d, module.params_d, create_graph=True))
    rows = [flat(algebra.grad(xi[i], params)) for i in range(len(xi))]
    return xi.detach(), torch.stack(rows)


def direction(module, real, z):
    g, d = module.update_direction(real, z)
    return flat(g + d)


@pytest.mark.parametrize("create_graph", [False, True])
def test_the_one_pass_zero_sum_field_is_each_players_gradient(create_graph, batch64):
    m = mlp_gan(Vanilla, loss="zero_sum")
    loss_g, loss_d = m(*batch64)
    xi_g, xi_d = algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d, create_graph=create_graph, zero_sum=True)
    assert torch.equal(flat(xi_g), flat(algebra.grad(loss_g, m.params_g)))
    assert torch.equal(flat(xi_d), flat(algebra.grad(loss_d, m.params_d)))
    none_g, only_d = algebra.vector_field(loss_g, loss_d, [], m.params_d, create_graph=create_graph, zero_sum=True)
    assert none_g == [] and torch.equal(flat(only_d), flat(xi_d))  # a frozen generator


@pytest.mark.parametrize("loss", ["ns", "zero_sum", "hinge", "wasserstein"])
def test_vanilla_is_the_field_by_finite_differences(loss, batch64):
    real, z = batch64
    m = mlp_gan(Vanilla, loss=loss)
    g, d = m.update_direction(real, z)
    torch.manual_seed(3)
    for player, grads, params in (("g", g, m.params_g), ("d", d, m.params_d)):
        v = [torch.randn_like(p) for p in params]
        h = 1e-6

        def loss_at(sign):
            with torch.no_grad():
                for p, vi in zip(params, v):
                    p.add_(sign * h * vi)
                loss_g, loss_d = m.losses(real, z)
                for p, vi in zip(params, v):
                    p.sub_(sign * h * vi)
            return (loss_g if player == "g" else loss_d).item()

        fd = (loss_at(1) - loss_at(-1)) / (2 * h)
        assert algebra.dot(grads, v).item() == pytest.approx(fd, rel=1e-7, abs=1e-10)


@pytest.mark.parametrize("loss", ["ns", "zero_sum", "hinge"])
def test_directions_match_explicit_jacobian(loss, batch64):
    real, z = batch64
    gamma, lam = 0.7, 1.3
    m = mlp_gan(Vanilla, loss=loss)
    xi, H = explicit_jacobian(m, real, z)
    n_g = sum(p.numel() for p in m.params_g)
    H12, H21 = H[:n_g, n_g:], H[n_g:, :n_g]
    K = torch.zeros_like(H)
    K[:n_g, n_g:], K[n_g:, :n_g] = H21.T, H12.T
    A = (H - H.T) / 2
    state = m.state_dict()

    def build(cls, **kw):
        other = mlp_gan(cls, loss=loss, **kw)
        other.load_state_dict(state)
        return direction(other, real, z)

    torch.testing.assert_close(direction(m, real, z), xi, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(build(ConOpt, gamma=gamma), xi + gamma * H.T @ xi, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(build(JARE, gamma=gamma), xi + gamma * K @ xi, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(build(SGA, lam=lam, align=False), xi + lam * A.T @ xi, rtol=1e-10, atol=1e-12)
    d = H.shape[0]
    sign = torch.sign((xi @ H.T @ xi) * ((A.T @ xi) @ (H.T @ xi)) / d + 0.1)
    torch.testing.assert_close(build(SGA, lam=lam), xi + lam * sign * A.T @ xi, rtol=1e-10, atol=1e-12)
    sign_t = torch.sign((xi @ H.T @ xi) * ((A.T @ xi) @ (H.T @ xi)) / len(m.params_g + m.params_d) + 0.1)
    torch.testing.assert_close(build(SGA, lam=lam, align_dim="tensors"), xi + lam * sign_t * A.T @ xi,
                               rtol=1e-10, atol=1e-12)


def test_alignment_can_flip_the_sign():
    """Near a local maximum of both losses <xi, H^T xi> < 0 and <A^T xi, H^T xi> > 0: lam turns negative."""
    # L_G = -phi^2/2 + phi*theta, L_D = -theta^2/2 - phi*theta: S = -I, A = [[0, 1], [-1, 0]]
    phi, theta = torch.tensor([1.0], dtype=torch.float64, requires_grad=True), \
        torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    loss_g, loss_d = -phi.square().sum() / 2 + (phi * theta).sum(), -theta.square().sum() / 2 - (phi * theta).sum()
    xi_g, xi_d = algebra.vector_field(loss_g, loss_d, [phi], [theta], create_graph=True)
    field = algebra.Field(loss_g, loss_d, xi_g, xi_d, [phi], [theta])
    aligned = SymplecticGradientAdjustment(lam=1.0).direction(None, field)
    plain = SymplecticGradientAdjustment(lam=1.0, align=False).direction(None, field)
    assert aligned.stats["sga/lambda"].item() == -1.0
    assert plain.stats["sga/lambda"].item() == 1.0
    xi = torch.stack([xi_g[0], xi_d[0]]).detach().reshape(-1)
    at_xi = torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=torch.float64) @ xi  # A^T xi
    torch.testing.assert_close(flat(aligned.g + aligned.d), xi - at_xi)


@pytest.mark.parametrize("loss", ["ns", "zero_sum"])
def test_regularisers_by_finite_differences(loss, batch64):
    """gamma^-1 (u - xi) is the gradient of the regulariser: ConOpt 1/2 ||xi||^2 for both players;
    JARE 1/2 ||xi_theta||^2 for G and 1/2 ||xi_phi||^2 for D."""
    real, z = batch64
    m = mlp_gan(Vanilla, loss=loss)
    params = m.params_g + m.params_d
    n_g = len(m.params_g)

    def xi_at():
        loss_g, loss_d = m.losses(real, z)
        xi_g, xi_d = algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d)
        return xi_g, xi_d

    regs = {
        "conopt": lambda xi_g, xi_d: 0.5 * (algebra.sq_norm(xi_g) + algebra.sq_norm(xi_d)),
        "jare_g": lambda xi_g, xi_d: 0.5 * algebra.sq_norm(xi_d),
        "jare_d": lambda xi_g, xi_d: 0.5 * algebra.sq_norm(xi_g),
    }
    xi = flat(m.update_direction(real, z)[0] + m.update_direction(real, z)[1])
    state = m.state_dict()
    corrections = {}
    for name, cls in (("conopt", ConOpt), ("jare", JARE)):
        other = mlp_gan(cls, loss=loss, gamma=1.0)
        other.load_state_dict(state)
        corrections[name] = direction(other, real, z) - xi
    torch.manual_seed(5)
    v = [torch.randn_like(p) for p in params]
    h = 1e-5
    for name, reg in regs.items():
        mask = [1.0] * len(params)
        if name == "jare_g":
            mask = [1.0] * n_g + [0.0] * (len(params) - n_g)
        elif name == "jare_d":
            mask = [0.0] * n_g + [1.0] * (len(params) - n_g)
        vm = [vi * mk for vi, mk in zip(v, mask)]

        def reg_at(sign):
            with torch.no_grad():
                for p, vi in zip(params, vm):
                    p.add_(sign * h * vi)
            value = reg(*xi_at()).item()
            with torch.no_grad():
                for p, vi in zip(params, vm):
                    p.sub_(sign * h * vi)
            return value

        fd = (reg_at(1) - reg_at(-1)) / (2 * h)
        corr = corrections["conopt"] if name == "conopt" else corrections["jare"]
        assert (corr @ flat(vm)).item() == pytest.approx(fd, rel=1e-6)


def test_jare_equals_sga_without_alignment_in_zero_sum_games(batch64):
    """With L_D = -L_G, A^T = [[0, H21^T], [H12^T, 0]]: JARE(gamma) = SGA(lam = gamma, no alignment)
    at arbitrary parameters, not only at an equilibrium."""
    real, z = batch64
    for seed in range(3):
        jare = mlp_gan(JARE, gamma=2.5, seed=seed)
        sga = mlp_gan(SGA, lam=2.5, align=False, seed=seed)
        torch.testing.assert_close(direction(jare, real, z), direction(sga, real, z), rtol=1e-11, atol=1e-13)
    # ... and not for the non-saturating game, where the two differ away from equilibrium.
    jare, sga = mlp_gan(JARE, gamma=2.5, loss="ns"), mlp_gan(SGA, lam=2.5, align=False, loss="ns")
    assert not torch.allclose(direction(jare, real, z), direction(sga, real, z), rtol=1e-6)


def test_jvp_and_vjp_against_explicit_jacobian(batch64):
    real, z = batch64
    m = mlp_gan(Vanilla, loss="ns")
    _, H = explicit_jacobian(m, real, z)
    params = m.params_g + m.params_d
    loss_g, loss_d = m(real, z)
    xi_g, xi_d = algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d, create_graph=True)
    torch.manual_seed(2)
    v = [torch.randn_like(p) for p in params]
    torch.testing.assert_close(flat(algebra.jvp(xi_g + xi_d, params, v)), H @ flat(v), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(flat(algebra.vjp(xi_g + xi_d, params, v)), H.T @ flat(v), rtol=1e-10, atol=1e-12)


def test_seeded_vjp_is_the_gradient_of_the_inner_product(batch64):
    """``vjp`` seeds the backward pass with v instead of differentiating <xi, v>: the same seeds, so
    the same numbers bit for bit; a field entry without a graph contributes nothing."""
    real, z = batch64
    m = mlp_gan(Vanilla, loss="ns")
    params = m.params_g + m.params_d
    loss_g, loss_d = m(real, z)
    field = sum(algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d, create_graph=True), [])
    torch.manual_seed(4)
    v = [torch.randn_like(p) for p in params]
    for a, b in zip(algebra.vjp(field, params, v), algebra.grad(algebra.dot(field, v), params)):
        assert torch.equal(a, b)
    # a parameter that does not reach its loss: its field entry is a constant zero without a graph
    constant = [torch.zeros_like(field[0]), *field[1:]]
    expected = algebra.grad(algebra.dot(field[1:], v[1:]), params)
    for a, b in zip(algebra.vjp(constant, params, v), expected):
        assert torch.equal(a, b)
    assert all(torch.equal(t, torch.zeros_like(p)) for t, p in zip(algebra.vjp(constant[:1], params, v[:1]), params))


def test_norm_is_the_square_root_of_the_squared_norm():
    torch.manual_seed(5)
    a = [torch.randn(3, 4, dtype=torch.float64), torch.randn(7, dtype=torch.float64)]
    assert algebra.norm(a).item() == pytest.approx(algebra.sq_norm(a).sqrt().item(), rel=1e-14)
    assert algebra.norm([]).item() == 0.0


@pytest.mark.parametrize("cls,kw", [(JARE, {"gamma": 0.5}), (ConOpt, {"gamma": 0.5}), (SGA, {"lam": 0.5}),
                                    (SGA, {"lam": 0.5, "align": False})])
def test_differentiable_direction_has_the_fd_jacobian(cls, kw, batch64):
    """``differentiable=True`` keeps the graph of the direction (what spectra of a method need)."""
    real, z = batch64
    m = mlp_gan(cls, width=3, depth=1, **kw)
    params = m.params_g + m.params_d
    loss_g, loss_d = m(real, z)
    xi_g, xi_d = algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d, create_graph=True)
    field = algebra.Field(loss_g, loss_d, xi_g, xi_d, m.params_g, m.params_d)
    u = flat(sum(m.method.direction(m.on_batch(real, z), field, differentiable=True)[:2], []))
    J = torch.stack([flat(algebra.grad(u[i], params)) for i in range(len(u))])
    torch.testing.assert_close(J, update_jacobian(m, real, z), rtol=1e-6, atol=1e-8)


def test_reduce_is_called_once_per_reduction(batch64):
    """Distributed training all-reduces one flat list per reduction: the field, then the products."""
    real, z = batch64
    calls = []

    def counting(tensors):
        calls.append(len(tensors))
        return tensors

    for cls, expected in ((SGA, [1, 2]), (JARE, [1, 1]), (ConOpt, [1, 1]), (Vanilla, [1])):
        m = mlp_gan(cls)
        loss_g, loss_d = m(real, z)
        xi_g, xi_d = algebra.vector_field(loss_g, loss_d, m.params_g, m.params_d, create_graph=True)
        n = len(xi_g) + len(xi_d)
        calls.clear()
        m.method.direction(m.on_batch(real, z), algebra.Field(loss_g, loss_d, xi_g, xi_d, m.params_g, m.params_d),
                           reduce=counting)
        assert calls == [k * n for k in expected], cls.__name__
