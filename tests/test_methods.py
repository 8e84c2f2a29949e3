"""The methods every GAN-dynamics study compares against: extragradient, optimistic GD, competitive
gradient descent and the gradient penalties, each against its formula (float64): hand recursions
on the Dirac-GAN step for step, an explicit dense solve with H built by jacrev, closed-form
eigenvalues at the equilibrium (reference note game_methods.md, section 5), hand-computed
penalties and finite differences."""
from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.func import functional_call, jacrev

from datamodules import MixtureOfGaussians
from game import algebra
from game.methods import CompetitiveGradient, Extragradient, OptimisticGradient
from gans import TwoPlayerGAN, Vanilla
from gans.networks import DiracGenerator, LinearDiscriminator
from spectra.spectrum import compute_spectrum
from tests.helpers import dirac_data, flat, mlp_gan, quiet_trainer

DIRAC_REAL = torch.zeros(4, 1, dtype=torch.float64)
DIRAC_Z = torch.zeros(4, 1, dtype=torch.float64)


def dirac(method=None, theta=1.0, psi=-1.0, lr=0.1, **kw) -> TwoPlayerGAN:
    """The Dirac-GAN (zero-sum): G = delta_theta, D(x) = psi x, data at 0, plain SGD."""
    return TwoPlayerGAN(DiracGenerator(1, theta), LinearDiscriminator(1, psi), latent_dim=1, loss="zero_sum",
                        method=method, optimizer=lambda p: torch.optim.SGD(p, lr=lr), **kw).double()


def sigmoid(s):
    return 1 / (1 + math.exp(-s))


def field(theta, psi):
    """xi of the zero-sum Dirac-GAN: L_D = log 2 + softplus(psi theta), L_G = -L_D."""
    s = sigmoid(psi * theta)
    return np.array([-s * psi, s * theta])


def blocks(theta, psi):
    """(H12, H21) of the Dirac-GAN: d xi_theta / d psi and d xi_psi / d theta (H21 = -H12)."""
    s = sigmoid(psi * theta)
    mixed = s * (1 - s) * psi * theta + s
    return -mixed, mixed


class Trajectory(pl.Callback):
    def __init__(self):
        self.points = []

    def on_train_batch_end(self, trainer, module, *args):
        self.points.append([module.generator.theta.item(), module.discriminator.psi.item()])


def train_dirac(model, steps):
    path = Trajectory()
    quiet_trainer(steps, callbacks=[path]).fit(model, datamodule=dirac_data())
    return np.array(path.points)


def recursion(step, steps, x0=(1.0, -1.0)):
    """x_{t+1} = step(x_t, t, history) by hand."""
    x, out = np.array(x0), []
    for t in range(steps):
        x = step(x, t)
        out.append(x.copy())
    return np.array(out)


# -- training follows each method's recursion on the Dirac-GAN, step for step ---------------------


@pytest.mark.parametrize("extrapolation", [None, 0.3])
def test_extragradient_training_is_its_recursion(extrapolation):
    h = 0.1
    eta = h if extrapolation is None else extrapolation
    expected = recursion(lambda x, t: x - h * field(*(x - eta * field(*x))), 60)
    trained = train_dirac(dirac(Extragradient(extrapolation), lr=h), 60)
    np.testing.assert_allclose(trained, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("previous_at_start", ["current", "zero"])
def test_optimistic_training_is_its_recursion(previous_at_start):
    h, previous = 0.1, [None]

    def step(x, t):
        xi = field(*x)
        past = previous[0] if previous[0] is not None else (xi if previous_at_start == "current" else 0 * xi)
        previous[0] = xi
        return x - h * (2 * xi - past)

    trained = train_dirac(dirac(OptimisticGradient(previous_at_start), lr=h), 60)
    np.testing.assert_allclose(trained, recursion(step, 60), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("solver", ["cg", "gmres"])
def test_competitive_gradient_training_is_its_recursion(solver):
    h, eta = 0.1, 0.5

    def step(x, t):
        xi_g, xi_d = field(*x)
        h12, h21 = blocks(*x)
        u_g = (xi_g - eta * h12 * xi_d) / (1 - eta ** 2 * h12 * h21)
        return x - h * np.array([u_g, xi_d - eta * h21 * u_g])

    model = dirac(CompetitiveGradient(eta, solver=solver, tol=1e-14), lr=h)
    np.testing.assert_allclose(train_dirac(model, 60), recursion(step, 60), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("every", [1, 3])
def test_simultaneous_gd_with_r1_is_its_recursion(every):
    """R1 = gamma / 2 psi^2 on the Dirac-GAN (grad_x D = psi): xi_psi + gamma psi, every k-th
    iteration scaled by k when lazy."""
    h, gamma = 0.1, 2.0

    def step(x, t):
        xi = field(*x)
        if t % every == 0:
            xi = xi + np.array([0.0, every * gamma * x[1]])
        return x - h * xi

    model = dirac(lr=h, penalty="r1", penalty_weight=gamma, penalty_every=every)
    np.testing.assert_allclose(train_dirac(model, 60), recursion(step, 60), rtol=1e-12, atol=1e-14)


def test_the_methods_claims_on_the_bilinear_game():
    """Where simultaneous GD spirals out, extragradient and optimistic GD converge for small steps,
    CGD for a large one (the proximal point step), and R1 makes the Dirac-GAN converge."""
    def final_norm(model, steps=400):
        return float(np.linalg.norm(train_dirac(model, steps)[-1]))

    start = math.sqrt(2)
    assert final_norm(dirac(lr=0.5)) > start
    assert final_norm(dirac(Extragradient(), lr=0.5)) < 0.5 * start
    assert final_norm(dirac(OptimisticGradient(), lr=0.5)) < 0.5 * start
    assert final_norm(dirac(CompetitiveGradient(eta=4.0), lr=4.0), 100) < 0.5 * start
    assert final_norm(dirac(lr=0.5, penalty="r1", penalty_weight=1.0)) < 0.1 * start


# -- eigenvalues at the equilibrium (reference note, section 5) ----------------------------------


def equilibrium_spectrum(model) -> np.ndarray:
    model.generator.theta.data.zero_()
    model.discriminator.psi.data.zero_()
    return np.sort_complex(compute_spectrum(model, DIRAC_REAL, DIRAC_Z, field="update").eigenvalues)


@pytest.mark.parametrize("eta", [0.1, 0.5, 2.0])
def test_dirac_extragradient_eigenvalues(eta):
    a = 0.5  # lambda(H) = +-i a; extragradient: lambda (1 - eta lambda) = eta a^2 +- i a
    np.testing.assert_allclose(equilibrium_spectrum(dirac(Extragradient(eta))), [eta * a * a - 1j * a, eta * a * a + 1j * a],
                               atol=1e-12)


@pytest.mark.parametrize("eta", [0.5, 1.0, 3.0])
def test_dirac_competitive_gradient_eigenvalues(eta):
    a = 0.5  # (eta a^2 +- i a) / (1 + eta^2 a^2); eta = 1: 0.2 +- 0.4i
    expected = np.array([eta * a * a - 1j * a, eta * a * a + 1j * a]) / (1 + eta ** 2 * a ** 2)
    np.testing.assert_allclose(equilibrium_spectrum(dirac(CompetitiveGradient(eta))), expected, atol=1e-10)
    if eta == 1.0:
        np.testing.assert_allclose(expected, [0.2 - 0.4j, 0.2 + 0.4j])


@pytest.mark.parametrize("gamma,expected", [(0.5, [0.25 - 0.4330127j, 0.25 + 0.4330127j]), (1.0, [0.5, 0.5]),
                                            (2.0, [0.1339746, 1.8660254]), (10.0, [0.0250628, 9.9749372])])
def test_dirac_r1_eigenvalues(gamma, expected):
    """(gamma +- sqrt(gamma^2 - 4 a^2)) / 2 with a = 1/2; R2 gives the same matrix."""
    for penalty in ("r1", "r2"):
        ev = equilibrium_spectrum(dirac(penalty=penalty, penalty_weight=gamma))
        np.testing.assert_allclose(ev, expected, atol=2e-5 if gamma == 1.0 else 1e-7)  # a double root: sqrt(eps)


def test_the_optimistic_spectrum_is_refused_with_what_it_means():
    with pytest.raises(ValueError, match="reads the previous iteration's field.*field='gradient'.*mu\\^2"):
        equilibrium_spectrum(dirac(OptimisticGradient()))


# -- CGD against an explicit dense solve ---------------------------------------------------------


def dense_jacobian(model, real, z):
    """xi and H = d xi / dx by jacrev of a function of the flat parameters (independent of game.algebra)."""
    names = model.parameter_names()
    params = model.params_g + model.params_d
    shapes, n_g = [p.shape for p in params], sum(p.numel() for p in model.params_g)
    sizes = [p.numel() for p in params]

    def xi_of(x):
        tensors = [t.reshape(s) for t, s in zip(x.split(sizes), shapes)]

        def losses(tensors_):
            return functional_call(model, dict(zip(names, tensors_)), (real, z))

        def loss_g(t):
            return losses(t)[0]

        def loss_d(t):
            return losses(t)[1]

        g = torch.cat([t.reshape(-1) for t in torch.func.grad(loss_g)(tensors)])[:n_g]
        d = torch.cat([t.reshape(-1) for t in torch.func.grad(loss_d)(tensors)])[n_g:]
        return torch.cat([g, d])

    x = torch.cat([p.detach().reshape(-1) for p in params])
    return xi_of(x).detach(), jacrev(xi_of)(x).detach(), n_g


@pytest.mark.parametrize("loss,solver", [("zero_sum", "auto"), ("ns", "auto"), ("wasserstein", "auto"),
                                         ("zero_sum", "gmres"), ("hinge", "gmres")])
def test_competitive_gradient_is_the_dense_solve(loss, solver, batch64):
    """u = (I + eta K)^-1 xi with K = [[0, H12], [H21, 0]]: conjugate gradient where H21 = -H12^T
    (zero-sum, Wasserstein), GMRES otherwise."""
    real, z = batch64
    eta = 0.7
    model = mlp_gan(TwoPlayerGAN, loss=loss, method=CompetitiveGradient(eta, solver=solver, tol=1e-13, max_iter=200))
    xi, H, n_g = dense_jacobian(model, real, z)
    K = torch.zeros_like(H)
    K[:n_g, n_g:], K[n_g:, :n_g] = H[:n_g, n_g:], H[n_g:, :n_g]
    expected = torch.linalg.solve(torch.eye(len(xi), dtype=xi.dtype) + eta * K, xi)
    g, d = model.update_direction(real, z)
    torch.testing.assert_close(flat(g + d), expected, rtol=1e-9, atol=1e-11)
    if loss in ("zero_sum", "wasserstein"):
        torch.testing.assert_close(H[n_g:, :n_g], -H[:n_g, n_g:].T, rtol=1e-10, atol=1e-12)  # why CG applies


def test_competitive_gradient_warm_starts_from_its_last_solve(batch64):
    real, z = batch64
    model = mlp_gan(TwoPlayerGAN, loss="zero_sum", method=CompetitiveGradient(0.7, tol=1e-8))
    batch_game = model.on_batch(real, z)
    first = model.method.direction(batch_game, batch_game.field(create_graph=True))
    model.method.commit(first)
    again = model.method.direction(batch_game, batch_game.field(create_graph=True))
    assert again.stats["cgd/iterations"] < first.stats["cgd/iterations"] and again.stats["cgd/residual"] < 1e-8
    torch.testing.assert_close(flat(again.g), flat(first.g), rtol=1e-6, atol=1e-9)


# -- the optimistic direction, the extragradient direction on a network --------------------------


def test_optimistic_direction_extrapolates_from_the_committed_field(batch64):
    real, z = batch64
    model = mlp_gan(TwoPlayerGAN, loss="ns", method=OptimisticGradient())
    xi = flat(sum(mlp_gan(Vanilla, loss="ns").update_direction(real, z), []))
    assert torch.equal(flat(sum(model.update_direction(real, z), [])), xi)  # nothing before: a plain step
    model.method.load_state_dict({"previous": {"g": [0.5 * t for t in model.update_direction(real, z)[0]]}})
    g, d = model.update_direction(real, z)
    n_g = sum(p.numel() for p in model.params_g)
    torch.testing.assert_close(flat(g), 1.5 * xi[:n_g])       # 2 xi - xi / 2
    torch.testing.assert_close(flat(d), xi[n_g:])             # the discriminator has no past yet


def test_extragradient_direction_is_the_field_one_step_ahead(batch64):
    real, z = batch64
    eta = 0.05
    model = mlp_gan(TwoPlayerGAN, loss="hinge", method=Extragradient(eta))
    plain = mlp_gan(Vanilla, loss="hinge")
    xi = sum(plain.update_direction(real, z), [])
    with torch.no_grad():
        for p, v in zip(plain.params_g + plain.params_d, xi):
            p.sub_(eta * v)
    ahead = flat(sum(plain.update_direction(real, z), []))
    torch.testing.assert_close(flat(sum(model.update_direction(real, z), [])), ahead, rtol=1e-12, atol=1e-14)
    assert torch.equal(flat(model.params_g + model.params_d), flat(mlp_gan(Vanilla).params_g + mlp_gan(Vanilla).params_d))


# -- penalties against hand-computed values and finite differences --------------------------------


def penalised(penalty, weight=3.0, loss="ns"):
    return mlp_gan(Vanilla, loss=loss, penalty=penalty, penalty_weight=weight)


def input_gradients(model, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.discriminator(x).sum(), x)
    return g


@pytest.mark.parametrize("penalty", ["r1", "r2", "wgan_gp"])
def test_each_penalty_by_hand(penalty, batch64):
    real, z = batch64
    model, plain = penalised(penalty), mlp_gan(Vanilla, loss="ns")
    (_, with_penalty), (_, without) = model.losses(real, z), plain.losses(real, z)
    fake = model.generator(z).detach()
    if penalty == "r1":
        expected = 3.0 / 2 * input_gradients(model, real).square().sum(1).mean()
    elif penalty == "r2":
        expected = 3.0 / 2 * input_gradients(model, fake).square().sum(1).mean()
    else:  # outside training the interpolation weights come from a fixed generator
        a = torch.rand(len(real), generator=torch.Generator().manual_seed(0)).double()[:, None]
        norms = input_gradients(model, real + a * (fake - real)).square().sum(1).sqrt()
        expected = 3.0 * (norms - 1).square().mean()
    torch.testing.assert_close(with_penalty - without, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("penalty", ["r1", "r2", "wgan_gp"])
@pytest.mark.parametrize("loss", ["zero_sum", "ns"])
def test_the_penalised_field_by_finite_differences(penalty, loss, batch64):
    """xi_theta gains the penalty's gradient and xi_phi is untouched (the fakes are detached), also
    through the zero-sum shortcut of one backward pass for both players."""
    real, z = batch64
    model, plain = penalised(penalty, loss=loss), mlp_gan(Vanilla, loss=loss)
    g, d = model.update_direction(real, z)
    g0, d0 = plain.update_direction(real, z)
    torch.testing.assert_close(flat(g), flat(g0), rtol=1e-12, atol=1e-14)
    torch.manual_seed(7)
    v = [torch.randn_like(p) for p in model.params_d]
    h = 1e-6

    def penalty_at(sign):
        with torch.no_grad():
            for net in (model, plain):
                for p, vi in zip(net.params_d, v):
                    p.add_(sign * h * vi)
            value = model.losses(real, z)[1] - plain.losses(real, z)[1]
            for net in (model, plain):
                for p, vi in zip(net.params_d, v):
                    p.sub_(sign * h * vi)
        return value.item()

    fd = (penalty_at(1) - penalty_at(-1)) / (2 * h)
    assert algebra.dot([a - b for a, b in zip(d, d0)], v).item() == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_wgan_gp_is_differentiable_where_the_discriminator_is_flat():
    """A ReLU discriminator has a zero input gradient where it is flat: the gap is 1 there and its
    derivative with respect to D's weights 0, not NaN."""
    from game import penalties

    w, b = torch.tensor([[1.0, -2.0]], dtype=torch.float64, requires_grad=True), torch.tensor([-100.0], dtype=torch.float64)
    x = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    gap = penalties.unit_gradient_gap(torch.relu(x @ w.T + b), x)
    (dw,) = torch.autograd.grad(gap, w)
    assert gap.item() == 1.0 and torch.equal(dw, torch.zeros_like(w))


def test_a_lazy_penalty_enters_every_kth_training_iteration_scaled(batch64):
    model = penalised("r1")
    model.game.penalty_every = 4  # the setting is the game's (the model reads it there)
    assert model.penalty_now(training=False) == "r1" and model.penalty_factor(training=False) == 1.5
    assert model.penalty_factor(training=True) == 6.0
    quiet_trainer(1).fit(model, datamodule=MixtureOfGaussians(batch_size=8))  # global step 1 now
    assert model.penalty_now(training=True) == "none" and model.penalty_now(training=False) == "r1"


# -- every method trains from the README's commands -----------------------------------------------


@pytest.mark.parametrize("method", [Extragradient(), OptimisticGradient(), CompetitiveGradient(0.1)],
                         ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("update", ["simultaneous", "alternating"])
def test_every_method_trains_with_either_schedule_and_logs_its_quantities(method, update):
    model = mlp_gan(TwoPlayerGAN, loss="ns", method=method, update=update,
                    optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    trainer = quiet_trainer(6, log_every_n_steps=2)
    trainer.fit(model, datamodule=MixtureOfGaussians(batch_size=16))
    assert trainer.global_step == 6 and all(torch.isfinite(p).all() for p in model.parameters())
    logged = set(trainer.logged_metrics)
    if isinstance(method, OptimisticGradient):     # nothing of its own to log: its state is the previous field
        assert all(model.method.state_dict()["previous"][player] is not None for player in "gd")
    else:
        assert {Extragradient: {"extragradient/extrapolation_norm"},
                CompetitiveGradient: {"cgd/iterations", "cgd/residual"}}[type(method)] <= logged


# -- refusals, the spectrum's solve tolerance, devices ------------------------------------------------


@pytest.mark.parametrize("loss", ["ns", "hinge"])
def test_cgd_refuses_conjugate_gradient_where_its_system_is_not_symmetric(loss):
    """solver='cg' on a non-zero-sum loss used H12 w = -H21^T w and solved another system without a
    word (2.6e-2 from the dense solve); it is refused where the model is built."""
    with pytest.raises(ValueError, match=f"solver='cg'.*with loss '{loss}' H21 is not -H12\\^T: use solver 'auto' or 'gmres'"):
        mlp_gan(TwoPlayerGAN, loss=loss, method=CompetitiveGradient(0.1, solver="cg"))
    mlp_gan(TwoPlayerGAN, loss="wasserstein", method=CompetitiveGradient(0.1, solver="cg"))  # symmetric: fine


def test_the_spectrum_of_cgd_solves_to_a_tolerance_its_precision_reaches(batch64, monkeypatch):
    """The update spectrum's products solve CGD's system inside the implicit function theorem. In
    float32 (the callback's default) the old tolerance of 1e-12 was never reached: every solve ran
    to its cap of 200 products (331 s for one spectrum of the default ns run); now none does."""
    from game import krylov, methods

    assert CompetitiveGradient.reachable_tolerance(1e-6, torch.float64) == 1e-12
    assert CompetitiveGradient.reachable_tolerance(1e-6, torch.float32) == pytest.approx(100 * 2 ** -23)
    runs = []

    def counted(matvec, b, x0=None, **kw):
        result = krylov.gmres(matvec, b, x0, **kw)
        runs.append(result.iterations)
        return result

    monkeypatch.setattr(methods, "gmres", counted)
    model = mlp_gan(TwoPlayerGAN, loss="ns", method=CompetitiveGradient(0.5, max_iter=30), width=8).float()
    real, z = (t.float() for t in batch64)
    compute_spectrum(model, real, z, field="update", k=4, dtype=torch.float32, tol=1e-4, max_products=60)
    assert runs and max(runs) < 200


#: every method, by (name, loss); CGD with ns solves by GMRES
DEVICE_CASES = [("vanilla", "zero_sum"), ("conopt", "zero_sum"), ("jare", "zero_sum"), ("sga", "zero_sum"),
                ("extragradient", "zero_sum"), ("optimistic", "zero_sum"), ("cgd", "zero_sum"), ("cgd", "ns")]


@pytest.mark.parametrize("name,loss", DEVICE_CASES)
def test_everything_a_method_makes_lives_on_the_fields_device(name, loss, batch64):
    """NCCL takes CUDA tensors only, even in a world of one process: a statistic made on the CPU
    (CGD's iterations, SGA's lambda) stopped every multi-GPU run at its first logged step. Without a
    GPU, the default device is set to 'meta' while the direction is computed: a tensor made without
    the field's device lands there, and the collective (a recording stand-in) sees it."""
    from game.methods import METHODS

    method = METHODS[name](*({"conopt": [1.0], "jare": [1.0], "cgd": [0.5]}.get(name, [])))
    model = mlp_gan(TwoPlayerGAN, method=method, loss=loss)
    batch_game = model.on_batch(*batch64)
    field_ = batch_game.field(create_graph=model.second_order)
    seen = []

    def collective(tensors):
        seen.extend(t.device for t in tensors)
        return tensors

    collective.agree = lambda value: (seen.append(value.device), value)[1]
    with torch.device("meta"):
        update = model.method.direction(batch_game, field_, reduce=collective)
    assert seen and all(d.type == "cpu" for d in seen)
    assert all(t.device.type == "cpu" for t in [*update.g, *update.d, *update.stats.values()])


@pytest.mark.parametrize("method", [OptimisticGradient(), CompetitiveGradient(0.5)], ids=["optimistic", "cgd"])
def test_a_methods_state_moves_to_the_models_device_when_fitting_starts(method, batch64):
    """A checkpoint is read on the CPU; a resumed GPU run mixed that state with CUDA tensors at its
    first step. ``Method.to`` moves it, and ``on_fit_start`` calls it with the model's device."""
    model = mlp_gan(TwoPlayerGAN, method=method)
    batch_game = model.on_batch(*batch64)
    update = model.method.direction(batch_game, batch_game.field(create_graph=model.second_order))
    model.method.commit(update)
    model.method.to("meta")
    tensors = [t for part in model.method.state_dict()["previous"].values() for t in part] \
        if isinstance(method, OptimisticGradient) else model.method.state_dict()["previous"]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    model.method.reset()
    moved = []
    model.method.to = lambda device: moved.append(torch.device(device))
    pl.seed_everything(0, verbose=False)
    quiet_trainer(1).fit(model, datamodule=MixtureOfGaussians(kind="grid", batch_size=8))
    assert moved == [torch.device("cpu")]
