"""The image networks: shapes, resolution checks, training with every method, exact double backward,
spectral normalization."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from datamodules import Digits
from game import algebra
from game.methods import CompetitiveGradient, Extragradient, OptimisticGradient
from gans import JARE, SGA, ConOpt, TwoPlayerGAN, Vanilla
from gans.networks import Conv4Discriminator, Conv4Generator, DCGANDiscriminator, DCGANGenerator, ResNetDiscriminator, ResNetGenerator
from gans.networks.images import UpConv5x5
from tests.helpers import flat, quiet_trainer

LATENT = 8
# small widths keep every test fast; the architectures are those of the defaults
PAIRS = {
    "dcgan": (DCGANGenerator, {"width": 8}, DCGANDiscriminator, {"width": 8}),
    "conv4": (Conv4Generator, {"width": 32, "batchnorm": False}, Conv4Discriminator, {"width": 4}),
    "conv4_sn_bn": (Conv4Generator, {"width": 32}, Conv4Discriminator, {"width": 4, "spectral_norm": True,
                                                                         "batchnorm": True}),
    "resnet": (ResNetGenerator, {"width": 8}, ResNetDiscriminator, {"width": 8}),
}
METHODS = [(Vanilla, {}), (Vanilla, {"update": "alternating"}), (ConOpt, {"gamma": 1.0}), (JARE, {"gamma": 1.0}),
           (SGA, {"lam": 1.0}), (TwoPlayerGAN, {"method": Extragradient(0.01)}),
           (TwoPlayerGAN, {"method": OptimisticGradient()}), (TwoPlayerGAN, {"method": CompetitiveGradient(0.1, max_iter=5)})]


def make_pair(name: str, channels: int = 3, resolution: int = 32) -> tuple[nn.Module, nn.Module]:
    g_cls, g_kw, d_cls, d_kw = PAIRS[name]
    return (g_cls(latent_dim=LATENT, channels=channels, resolution=resolution, **g_kw),
            d_cls(channels=channels, resolution=resolution, **d_kw))


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", PAIRS)
def test_shapes_and_range(name, channels, resolution):
    torch.manual_seed(0)
    g, d = make_pair(name, channels, resolution)
    fake = g(3 * torch.randn(5, LATENT))
    assert fake.shape == (5, channels, resolution, resolution)
    assert fake.abs().max() <= 1 and fake.std() > 0
    assert d(fake).shape == (5,)
    assert d(torch.rand(5, channels, resolution, resolution) * 2 - 1).shape == (5,)


@pytest.mark.parametrize("cls,bad", [(DCGANGenerator, 40), (DCGANDiscriminator, 8), (Conv4Generator, 48),
                                     (Conv4Discriminator, 8), (ResNetGenerator, 40), (ResNetDiscriminator, 96)],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_bad_resolution_is_a_clear_error(cls, bad):
    with pytest.raises(ValueError) as err:
        cls(resolution=bad)
    message = str(err.value)
    assert cls.__name__ in message and repr(bad) in message and "32" in message and "64" in message


def test_dcgan_upsampling_is_the_stock_transposed_convolution():
    torch.manual_seed(0)
    up = UpConv5x5(3, 2)
    stock = nn.ConvTranspose2d(3, 2, 5, stride=2, padding=2, output_padding=1)
    stock.load_state_dict(up.state_dict())
    x = torch.randn(2, 3, 5, 7)
    torch.testing.assert_close(up(x), stock(x))


def test_conv4_generator_width_must_halve_evenly():
    with pytest.raises(ValueError, match="Conv4Generator.*divisible by 2\\^4"):
        Conv4Generator(resolution=64, width=24)


@pytest.mark.parametrize("cls,kw", METHODS, ids=lambda v: getattr(v, "__name__", str(v)))
@pytest.mark.parametrize("name", PAIRS)
def test_every_method_trains_every_network(name, cls, kw):
    torch.manual_seed(0)
    model = cls(*make_pair(name, channels=1), latent_dim=LATENT, loss="ns",
                optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), **kw)
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    trainer = quiet_trainer(2)
    trainer.fit(model, datamodule=Digits(batch_size=4))
    assert trainer.global_step == 2
    params = dict(model.named_parameters())
    assert all(torch.isfinite(p).all() for p in params.values())
    weights = [k for k, p in params.items() if p.ndim > 1]
    assert any(k.startswith("generator.") for k in weights) and any(k.startswith("discriminator.") for k in weights)
    assert [k for k in weights if torch.equal(params[k], before[k])] == []


@pytest.mark.parametrize("name", ["dcgan", "resnet"])
def test_double_backward_matches_finite_differences(name):
    """H v and H^T v of the game field xi (double backward, as in SGA) against central differences
    of xi; float64, spectral-norm vectors frozen (eval mode) so xi is a fixed function."""
    torch.manual_seed(0)
    g_cls, g_kw, d_cls, d_kw = PAIRS[name]
    g = g_cls(latent_dim=LATENT, channels=1, resolution=16, width=4)
    d = d_cls(channels=1, resolution=16, width=4, **({"spectral_norm": True} if name == "resnet" else {}))
    model = Vanilla(g, d, latent_dim=LATENT, loss="ns").double()
    model.discriminator.eval()            # BatchNorm in the generator stays in train mode: batch statistics
    real, z = torch.rand(4, 1, 16, 16, dtype=torch.float64) * 2 - 1, torch.randn(4, LATENT, dtype=torch.float64)
    params = model.params_g + model.params_d

    def field(create_graph=False):
        # not model.losses: restoring the BatchNorm buffers in place would invalidate the saved graph
        losses = model.loss_fn(model.discriminator(real), model.discriminator(model.generator(z)))
        return algebra.vector_field(*losses, model.params_g, model.params_d, create_graph=create_graph)

    v = [torch.randn_like(p) for p in params]
    w = [torch.randn_like(p) for p in params]
    ht_v, h_v = algebra.vjp_and_jvp(sum(field(create_graph=True), []), params, v)

    def central_difference(direction, h=1e-6):
        x0 = torch.nn.utils.parameters_to_vector(params).detach().clone()
        outs = []
        for sign in (1, -1):
            torch.nn.utils.vector_to_parameters(x0 + sign * h * flat(direction), params)
            outs.append(flat(sum(field(), [])))
        torch.nn.utils.vector_to_parameters(x0, params)
        return (outs[0] - outs[1]) / (2 * h)

    fd_v = central_difference(v)
    assert fd_v.norm() > 0
    assert (flat(h_v) - fd_v).norm() <= 1e-4 * fd_v.norm()
    # <H^T v, w> = <v, H w>
    assert torch.isclose(algebra.dot(ht_v, w), flat(v) @ central_difference(w), rtol=1e-4)


@pytest.mark.parametrize("d", [lambda: Conv4Discriminator(width=8, spectral_norm=True),
                               lambda: Conv4Discriminator(width=8, spectral_norm=True, batchnorm=True),
                               lambda: ResNetDiscriminator(width=8, resolution=64, channels=1)],
                         ids=["conv4", "conv4_bn", "resnet"])
def test_spectral_norm_normalizes_every_layer(d):
    torch.manual_seed(0)
    d = d()
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
    channels = layers[0].in_channels
    resolution = 64 if isinstance(d, ResNetDiscriminator) else 32
    with torch.no_grad():
        for _ in range(20):          # one power iteration per forward in train mode
            d(torch.randn(4, channels, resolution, resolution))
        sigmas = torch.stack([torch.linalg.matrix_norm(m.weight.flatten(1), ord=2) for m in layers])
    assert torch.allclose(sigmas, torch.ones_like(sigmas), rtol=0.05), sigmas


def test_spectral_norm_off_leaves_plain_layers():
    for d in (Conv4Discriminator(width=4), ResNetDiscriminator(width=4, spectral_norm=False), DCGANDiscriminator(width=4)):
        assert not any(parametrize.is_parametrized(m) for m in d.modules())
