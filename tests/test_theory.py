"""Closed-form oracles: the Dirac-GAN (Mescheder et al. 2018) and JARE's affine toy game.

The Jacobian of a method's update field is taken by central differences of ``update_direction``
(float64), so these tests see exactly what training applies.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from gans import JARE, SGA, ConOpt, Vanilla
from gans.networks import AffineGenerator, LinearDiscriminator
from tests.helpers import dirac_data, dirac_gan, quiet_trainer, update_jacobian


def eigvals(module, real, z):
    return np.sort_complex(np.linalg.eigvals(update_jacobian(module, real, z).numpy()))


# -- Dirac-GAN -----------------------------------------------------------------------------------

DIRAC_REAL = torch.zeros(4, 1, dtype=torch.float64)
DIRAC_Z = torch.zeros(4, 1, dtype=torch.float64)


@pytest.mark.parametrize("loss", ["zero_sum", "ns"])
def test_dirac_vanilla_eigenvalues_at_equilibrium(loss):
    ev = eigvals(dirac_gan(Vanilla, 0.0, 0.0, loss=loss), DIRAC_REAL, DIRAC_Z)
    np.testing.assert_allclose(ev, [-0.5j, 0.5j], atol=1e-8)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("cls,kw", [(ConOpt, "gamma"), (JARE, "gamma"), (SGA, "lam")])
def test_dirac_regularised_eigenvalues(cls, kw, gamma):
    """ConOpt, JARE and SGA (lam = gamma, no alignment) all give H + gamma/4 I at (0, 0)."""
    extra = {"align": False} if cls is SGA else {}
    ev = eigvals(dirac_gan(cls, 0.0, 0.0, **{kw: gamma}, **extra), DIRAC_REAL, DIRAC_Z)
    np.testing.assert_allclose(ev, [0.25 * gamma - 0.5j, 0.25 * gamma + 0.5j], atol=1e-7)


class Trajectory(pl.Callback):
    def __init__(self):
        self.points = []

    def on_train_batch_end(self, trainer, module, *args):
        self.points.append((module.generator.theta.item(), module.discriminator.psi.item()))


def run_dirac(module, steps):
    traj = Trajectory()
    quiet_trainer(steps, callbacks=[traj]).fit(module, datamodule=dirac_data())
    return np.linalg.norm(np.array(traj.points), axis=1)


def test_dirac_simultaneous_gd_spirals_out():
    """|1 + i h f'(0)| > 1: simultaneous GD with h = 0.1 grows from norm sqrt(2) to ~3.10 in 2000 steps.

    Mescheder's D scores fakes positive, ours scores reals positive: their psi is our -psi, so their
    start (1, 1) is our (1, -1)."""
    norms = run_dirac(dirac_gan(Vanilla, 1.0, -1.0, lr=0.1), 2000)
    assert norms[-1] == pytest.approx(3.10, abs=0.02)
    assert np.all(np.diff(norms) > 0)


@pytest.mark.parametrize("order", ["g_first", "d_first"])
def test_dirac_alternating_gd_stays_bounded(order):
    """Alternating GD has |lambda| = 1 for h f'(0) <= 2: it circles and neither converges nor diverges."""
    norms = run_dirac(dirac_gan(Vanilla, lr=0.1, update="alternating", order=order), 2000)
    assert norms.max() < 1.6 and norms.min() > 1.0


def test_dirac_alternating_gd_with_more_d_steps_matches_theory():
    """Linearised AltGD with n_g = 1, n_d = 3 and h = 0.5 has det 1 and trace 2 - alpha^2 with
    alpha^2 = n_d h^2 f'(0)^2: a rotation by acos(1 - alpha^2 / 2) per iteration."""
    m = dirac_gan(Vanilla, 1e-3, 0.0, lr=0.5, update="alternating", n_d=3)
    run = Trajectory()
    quiet_trainer(400, callbacks=[run]).fit(m, datamodule=dirac_data())
    alpha2 = 3 * 0.25 ** 2
    angle = math.acos(1 - alpha2 / 2)
    # the linear map is not a pure rotation, but its orbit has period 2 pi / angle
    theta = np.array(run.points)[:, 0]
    sign_changes = np.count_nonzero(np.diff(np.sign(theta)) != 0)
    assert sign_changes == pytest.approx(400 * angle / math.pi, abs=2)


@pytest.mark.parametrize("cls,kw", [(ConOpt, {"gamma": 1.0}), (JARE, {"gamma": 1.0}), (SGA, {"lam": 1.0})])
def test_dirac_regularised_methods_converge(cls, kw):
    """Where simultaneous GD diverges, ConOpt, JARE and SGA move to the equilibrium."""
    norms = run_dirac(dirac_gan(cls, lr=0.1, **kw), 500)
    assert norms[-1] < 0.25 * math.sqrt(2)


# -- JARE's affine toy (reference note, section 4.2) ---------------------------------------------

SIGMA, V = 0.7, torch.tensor([0.0, 2.0], dtype=torch.float64)
# Four points with mean 0 and second moment I: the minibatch moments equal the population ones.
UNIT = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
TOY_REAL, TOY_Z = V + SIGMA * UNIT, SIGMA * UNIT


def affine_toy(cls, loss="zero_sum", **kw):
    """G(z) = z + phi, D(x) = theta^T x at the equilibrium phi* = v, theta* = 0."""
    return cls(AffineGenerator(2, V.tolist()), LinearDiscriminator(2, 0.0), latent_dim=2, loss=loss, **kw).double()


def block_jacobian():
    """H = [[0, a I], [-a I, -c M]] with a = -1/2, c = -1/2, M = sigma^2 I + v v^T."""
    a, c = -0.5, -0.5
    M = SIGMA ** 2 * torch.eye(2, dtype=torch.float64) + torch.outer(V, V)
    eye = torch.eye(2, dtype=torch.float64)
    return torch.cat([torch.cat([0 * eye, a * eye], 1), torch.cat([-a * eye, -c * M], 1)], 0)


TABLE = {  # reference note, section 4.2: eigenvalues of each method's update Jacobian
    ("vanilla", 0): [0.117509, 2.127491, 0.1225 - 0.484762j, 0.1225 + 0.484762j],
    ("conopt", 1): [0.113901, 7.671124, 0.402513 - 0.460145j, 0.402513 + 0.460145j],
    ("jare", 1): [0.119002, 2.625998, 0.3725 - 0.416826j, 0.3725 + 0.416826j],
    ("conopt", 10): [0.210893, 1.727118, 4.118132, 57.434357],
    ("jare", 10): [1.049077, 2.008085, 3.236915, 6.195923],
    ("conopt", 100): [1.227659, 15.491636, 40.755864, 555.019841],
    ("jare", 100): [18.56373, 22.695566, 27.549434, 33.68127],
}


@pytest.mark.parametrize("loss", ["zero_sum", "ns"])
def test_affine_toy_block_formulas(loss):
    H = block_jacobian()
    H11, H12, H21, H22 = H[:2, :2], H[:2, 2:], H[2:, :2], H[2:, 2:]
    gamma = 3.0
    jare_term = torch.cat([torch.cat([H21.T @ H21, H21.T @ H22], 1), torch.cat([H12.T @ H11, H12.T @ H12], 1)], 0)
    expected = {
        "vanilla": (Vanilla, {}, H),
        "conopt": (ConOpt, {"gamma": gamma}, H + gamma * H.T @ H),
        "jare": (JARE, {"gamma": gamma}, H + gamma * jare_term),
    }
    for name, (cls, kw, J) in expected.items():
        torch.testing.assert_close(update_jacobian(affine_toy(cls, loss, **kw), TOY_REAL, TOY_Z), J,
                                   rtol=1e-7, atol=1e-8, msg=name)


@pytest.mark.parametrize("method,gamma", list(TABLE))
def test_affine_toy_eigenvalue_table(method, gamma):
    cls = {"vanilla": Vanilla, "conopt": ConOpt, "jare": JARE}[method]
    ev = eigvals(affine_toy(cls, **({"gamma": float(gamma)} if gamma else {})), TOY_REAL, TOY_Z)
    expected = np.sort_complex(np.array(TABLE[(method, gamma)], dtype=complex))
    np.testing.assert_allclose(ev, expected, rtol=2e-6, atol=2e-6)
    if method == "jare":  # JARE = SGA(lam = gamma, no alignment) in this zero-sum game
        sga = eigvals(affine_toy(SGA, lam=float(gamma), align=False), TOY_REAL, TOY_Z)
        np.testing.assert_allclose(sga, expected, rtol=2e-6, atol=2e-6)
