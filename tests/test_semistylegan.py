"""Semi-StyleGAN: each loss term against a hand computation, how the terms weigh into the player
losses, code sampling, the update methods, and clear errors for networks that break the contract."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from game import algebra
from game.methods import ConsensusOptimization, JacobianRegularization
from game.penalties import squared_gradient_norm
from game.semi_losses import code_error, mix, supervised_error
from gans import SemiStyleGAN
from gans.networks import StyleGANDiscriminator, StyleGANGenerator
from gans.semistylegan import FactorBatch


def test_code_error_is_the_mean_norm_or_squared_norm():
    pred, target = torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.zeros(2, 2)
    assert code_error(pred, target).item() == pytest.approx(2.5)
    assert code_error(pred, target, squared=True).item() == pytest.approx(12.5)


def test_supervised_error_averages_over_labelled_items_only():
    pred_a, codes_a = torch.tensor([[1.0, 0.0], [9.0, 9.0]]), torch.zeros(2, 2)
    mask_a = torch.tensor([True, False])
    pred_b, codes_b = torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2)
    value = supervised_error([(pred_a, codes_a, mask_a), (pred_b, codes_b, None)])
    assert value.item() == pytest.approx((1.0 + 2.0) / 2)
    pred = torch.ones(2, 2, requires_grad=True)
    none = supervised_error([(pred, torch.zeros(2, 2), torch.tensor([False, False]))])
    assert none.item() == 0 and none.requires_grad  # every process runs the same backward


def test_supervised_error_of_two_processes_averages_to_the_global_one():
    """Processes with 1 and 3 labelled items: the mean of their values (what averaging gradients
    computes) is the mean over all 4 items, once each process divides by the mean count."""
    torch.manual_seed(0)
    pred, codes = torch.rand(6, 2, dtype=torch.float64), torch.rand(6, 2, dtype=torch.float64)
    mask = torch.tensor([True, False, False, True, True, True])
    whole = supervised_error([(pred, codes, mask)])
    counts = torch.tensor([1.0, 3.0], dtype=torch.float64)
    halves = [supervised_error([(pred[s], codes[s], mask[s])], mean_count=lambda c: counts.mean())
              for s in (slice(0, 3), slice(3, 6))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, whole)
    naive = [supervised_error([(pred[s], codes[s], mask[s])]) for s in (slice(0, 3), slice(3, 6))]
    assert not torch.allclose((naive[0] + naive[1]) / 2, whole)


def test_mix_and_r1_by_hand():
    a, b = torch.ones(2, 3), torch.zeros(2, 3)
    torch.testing.assert_close(mix(a, b, torch.tensor([0.25, 1.0])), torch.tensor([[0.25] * 3, [1.0] * 3]))
    x = torch.randn(4, 1, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, dtype=torch.float64)
    assert squared_gradient_norm(x.flatten(1) @ w, x).item() == pytest.approx(w.square().sum().item())   # grad = w
    expected = (4 * x.detach().square().flatten(1).sum(1)).mean().item()                     # grad of |x|^2 = 2x
    assert squared_gradient_norm(x.square().flatten(1).sum(1), x).item() == pytest.approx(expected)


class ToyGenerator(nn.Module):
    """G([c, z]) = tanh(latent A) as 1x2x2 images."""

    code_dim, noise_dim = 2, 1

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))

    def forward(self, latent):
        return torch.tanh(latent @ self.A).reshape(-1, 1, 2, 2)


class ToyDiscriminator(nn.Module):
    """D(x) = (x u, x V): a linear logit and linear codes."""

    def __init__(self):
        super().__init__()
        self.u = nn.Parameter(torch.randn(4, dtype=torch.float64))
        self.V = nn.Parameter(torch.randn(4, 2, dtype=torch.float64))

    def forward(self, x):
        flat = x.flatten(1)
        return flat @ self.u, flat @ self.V


def toy_model(**kwargs) -> SemiStyleGAN:
    torch.manual_seed(0)
    return SemiStyleGAN(ToyGenerator(), ToyDiscriminator(), factor_sizes=[3, 5], **kwargs)


def toy_batch():
    torch.manual_seed(1)
    return FactorBatch(torch.randn(3, 1, 2, 2, dtype=torch.float64), torch.rand(3, 2, dtype=torch.float64),
                       torch.tensor([True, False, True]), torch.randn(2, 1, 2, 2, dtype=torch.float64),
                       torch.rand(2, 2, dtype=torch.float64))


def test_each_loss_term_by_hand():
    model, batch = toy_model(), toy_batch()
    latent = torch.rand(3, 3, dtype=torch.float64)
    terms = model.loss_terms(batch, latent, "gd", penalty="r1")
    lam = torch.rand(3, generator=torch.Generator().manual_seed(0)).double()  # the smoothness term's draw

    A, u, V = model.generator.A, model.discriminator.u, model.discriminator.V
    G = lambda lat: torch.tanh(lat @ A)  # noqa: E731  (flattened images)
    norm = lambda t: t.square().sum(1).sqrt()  # noqa: E731
    c, fake = latent[:, :2], G(latent)
    real = batch.images.flatten(1)
    c_mix = lam[:, None] * c + (1 - lam[:, None]) * c.roll(1, 0)
    sup_errors = torch.cat([norm(real @ V - batch.codes)[batch.labelled],
                            norm(batch.labelled_images.flatten(1) @ V - batch.labelled_codes)])
    expected = {
        "unsup": norm(fake @ V - c).mean(),
        "g_adv": F.softplus(-(fake @ u)).mean(),
        "smooth": norm(G(torch.cat([c_mix, latent[:, 2:]], 1)) @ V - c_mix).mean(),
        "d_adv": F.softplus(fake @ u).mean() + F.softplus(-(real @ u)).mean(),
        "sup": sup_errors.mean(),
        "r1": u.square().sum(),  # D is linear in x: grad_x D = u for every sample
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(terms[name], value, msg=name)


def test_smoothness_on_images_and_the_generator_side_supervision():
    model, batch = toy_model(smoothness="images", sup_weight_g=1.0), toy_batch()
    latent = torch.rand(3, 3, dtype=torch.float64)
    terms = model.loss_terms(batch, latent, "gd")
    lam = torch.rand(2, generator=torch.Generator().manual_seed(0)).double()
    A, V = model.generator.A, model.discriminator.V
    x, y = batch.labelled_images.flatten(1), batch.labelled_codes
    x_mix, y_mix = lam[:, None] * x + (1 - lam[:, None]) * x.roll(1, 0), lam[:, None] * y + (1 - lam[:, None]) * y.roll(1, 0)
    torch.testing.assert_close(terms["smooth"], (x_mix @ V - y_mix).norm(dim=1).mean())
    g_sup = torch.tanh(torch.cat([y, latent[:2, 2:]], 1) @ A) @ V - y
    torch.testing.assert_close(terms["g_sup"], g_sup.norm(dim=1).mean())


def test_player_losses_weigh_the_terms():
    model = toy_model(unsup_weight_g=2.0, unsup_weight_d=3.0, sup_weight=5.0, smooth_weight=7.0, penalty_weight=4.0,
                      penalty_every=3)
    terms = model.loss_terms(toy_batch(), torch.rand(3, 3, dtype=torch.float64), "gd", penalty="r1")
    loss_g, loss_d = model.weighted_losses(terms, training=True)
    torch.testing.assert_close(loss_g, terms["g_adv"] + 2 * terms["unsup"] + 7 * terms["smooth"])
    torch.testing.assert_close(loss_d, terms["d_adv"] + 3 * terms["unsup"] + 5 * terms["sup"] + 4 / 2 * 3 * terms["r1"])
    _, unscaled = model.weighted_losses(terms)  # outside training the lazy penalty enters every time, unscaled
    torch.testing.assert_close(unscaled, terms["d_adv"] + 3 * terms["unsup"] + 5 * terms["sup"] + 4 / 2 * terms["r1"])
    g_only = model.weighted_losses(model.loss_terms(toy_batch(), torch.rand(3, 3, dtype=torch.float64), "g"))
    assert g_only[1] is None and g_only[0] is not None


def test_phases_compute_only_their_players_terms():
    model, batch = toy_model(), toy_batch()
    latent = torch.rand(3, 3, dtype=torch.float64)
    assert set(model.loss_terms(batch, latent, "g")) == {"unsup", "g_adv", "smooth"}
    assert set(model.loss_terms(batch, latent, "d", penalty="r1")) == {"unsup", "d_adv", "sup", "r1"}


def test_codes_are_drawn_from_the_factor_grid_or_uniformly():
    model = toy_model()
    codes = model.sample_codes(4000, torch.Generator().manual_seed(0))
    assert set(torch.unique(codes[:, 0]).tolist()) == {0.0, 0.5, 1.0}
    assert set(torch.unique(codes[:, 1]).tolist()) == {0.0, 0.25, 0.5, 0.75, 1.0}
    uniform = toy_model(code_sampling="uniform").sample_codes(4000, torch.Generator().manual_seed(0))
    assert len(torch.unique(uniform[:, 0])) > 3000 and 0 <= uniform.min() and uniform.max() <= 1
    no_grid = SemiStyleGAN(ToyGenerator(), ToyDiscriminator())
    with pytest.raises(ValueError, match="factor grid"):
        no_grid.sample_codes(2)


@pytest.mark.parametrize("method", [JacobianRegularization(0.5), ConsensusOptimization(0.5)],
                         ids=lambda m: type(m).__name__)
def test_second_order_methods_use_the_game_algebra(method):
    """JARE and ConOpt on this model are their directions of its field: H built from its own losses."""
    model, batch = toy_model(method=method, update="simultaneous"), toy_batch()
    latent = torch.rand(3, 3, dtype=torch.float64)
    loss_g, loss_d = model.weighted_losses(model.loss_terms(batch, latent, "gd", penalty="r1"))
    params = model.params_g + model.params_d
    xi = torch.cat([t.reshape(-1) for t in algebra.grad(loss_g, model.params_g, create_graph=True)
                    + algebra.grad(loss_d, model.params_d, create_graph=True)])
    H = torch.stack([torch.cat([t.reshape(-1) for t in algebra.grad(xi[i], params)]) for i in range(len(xi))])
    n_g = sum(p.numel() for p in model.params_g)
    correction = H.T @ xi.detach()
    if isinstance(method, JacobianRegularization):  # the off-diagonal blocks only
        K = torch.zeros_like(H)
        K[:n_g, n_g:], K[n_g:, :n_g] = H[n_g:, :n_g].T, H[:n_g, n_g:].T
        correction = K @ xi.detach()
    g, d = model.update_direction(batch, latent)
    ours = torch.cat([t.reshape(-1) for t in g + d])
    torch.testing.assert_close(ours, xi.detach() + 0.5 * correction)
    assert not torch.allclose(ours, xi.detach())  # the correction is not zero


def test_contract_errors_are_clear():
    class Plain(nn.Module):
        def forward(self, z):
            return z

    with pytest.raises(ValueError, match="must say how its latent splits"):
        SemiStyleGAN(Plain(), ToyDiscriminator())
    model = SemiStyleGAN(StyleGANGenerator(2, 2, resolution=8, channel_base=64, channel_max=4, w_dim=4),
                         nn.Sequential(nn.Flatten(), nn.Linear(64, 1)), factor_sizes=[2, 2])
    with pytest.raises(ValueError, match=r"must return \(logits, codes\)"):
        model.check_networks((1, 8, 8))
    with pytest.raises(TypeError, match="method must be a game.methods.Method"):
        toy_model(method="sga")
    with pytest.raises(ValueError, match="leave latent_dim out"):
        toy_model(latent_dim=7)
    with pytest.raises(ValueError, match="discriminator_pass='joint' does not apply to SemiStyleGAN"):
        toy_model(discriminator_pass="joint")
    assert toy_model(discriminator_pass="separate").discriminator_pass == "separate"


def test_fine_variant_samples_from_its_reference_images():
    torch.manual_seed(0)
    g = StyleGANGenerator(2, 3, resolution=16, channels=1, channel_base=64, channel_max=4, w_dim=4, input_resolution=4)
    d = StyleGANDiscriminator(2, resolution=16, channels=1, channel_base=64, channel_max=4, fine_codes=2,
                              fine_resolution=8)
    model = SemiStyleGAN(g, d, factor_sizes=[4, 4], num_reference=5)
    model.reference.copy_(torch.randn(5, 1, 4, 4))
    latent = model.sample_latent(7, torch.Generator().manual_seed(0))
    images = latent[:, 5:].reshape(7, 1, 4, 4)
    assert all(any(torch.equal(im, ref) for ref in model.reference) for im in images)
    real = torch.randn(7, 1, 16, 16)
    conditioned = model.with_images(latent, real)
    torch.testing.assert_close(conditioned[:, 5:].reshape(7, 1, 4, 4), F.avg_pool2d(real, 4))
    model.check_networks((1, 16, 16))
