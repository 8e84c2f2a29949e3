"""The StyleGAN2-style players: shapes at every resolution, the modulated convolution against the
grouped (fused) form, minibatch-stddev by hand, how the latent splits, clear errors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gans.networks import StyleGANDiscriminator, StyleGANGenerator
from gans.networks.stylegan import MappingNetwork, ModulatedConv2d, minibatch_stddev, pixel_norm

TINY = dict(channel_base=256, channel_max=16, w_dim=16)


@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_shapes_and_code_heads(resolution):
    torch.manual_seed(0)
    g = StyleGANGenerator(4, 6, resolution=resolution, channels=3, **TINY)
    d = StyleGANDiscriminator(4, resolution=resolution, channels=3, channel_base=256, channel_max=16)
    images = g(torch.randn(5, g.latent_dim))
    assert images.shape == (5, 3, resolution, resolution) and images.abs().max() <= 1
    logits, codes = d(images)
    assert logits.shape == (5,) and codes.shape == (5, 4)


def test_modulated_conv_equals_the_grouped_form():
    """The non-fused form (scale input, shared conv, scale output) against StyleGAN2's fused form,
    which builds one demodulated weight per sample and runs a grouped convolution."""
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 7, 3, w_dim=4).double()
    x, w = torch.randn(3, 5, 6, 6, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    style = conv.affine(w)
    weight = conv.weight[None] * conv.scale * style[:, None, :, None, None]           # (B, out, in, k, k)
    weight = weight / weight.square().sum(dim=(2, 3, 4), keepdim=True).add(1e-8).sqrt()
    fused = F.conv2d(x.reshape(1, 15, 6, 6), weight.reshape(21, 5, 3, 3), padding=1, groups=3).reshape(3, 7, 6, 6)
    torch.testing.assert_close(conv(x, w), fused)


def test_minibatch_stddev_by_hand():
    x = torch.arange(24, dtype=torch.float64).reshape(4, 3, 2, 1) ** 1.5
    out = minibatch_stddev(x, group=2)
    # groups are samples {0, 2} and {1, 3} (stride n // g), as in StyleGAN
    for members in ([0, 2], [1, 3]):
        std = x[members].var(dim=0, unbiased=False).add(1e-8).sqrt().mean()
        for i in members:
            torch.testing.assert_close(out[i, 3], torch.full((2, 1), float(std), dtype=torch.float64))
    torch.testing.assert_close(out[:, :3], x)
    assert minibatch_stddev(x[:3], group=2).shape == (3, 4, 2, 1)  # the group shrinks to divide the batch


def test_mapping_network_concatenates_normalised_noise_and_embedded_codes():
    torch.manual_seed(0)
    net = MappingNetwork(noise_dim=3, code_dim=2, w_dim=4, depth=0)
    z, c = torch.randn(5, 3), torch.rand(5, 2)
    torch.testing.assert_close(net(z, c), torch.cat([pixel_norm(z), c @ (net.embed.weight.T / math.sqrt(2))], dim=1))
    assert torch.allclose(pixel_norm(z).square().mean(1), torch.ones(5), atol=1e-5)


def test_codes_steer_their_layers():
    """With fine_codes, the coarse codes change the image through the low layers and the fine
    codes only through the layers at fine_resolution and above."""
    torch.manual_seed(0)
    g = StyleGANGenerator(3, 4, resolution=32, channels=1, fine_codes=1, fine_resolution=16, **TINY)
    latent = torch.rand(2, g.latent_dim)
    changed = latent.clone()
    changed[:, 2] += 0.5  # the fine code
    assert not torch.allclose(g(latent), g(changed))
    captured = []
    g.blocks[0].register_forward_hook(lambda m, i, o: captured.append(o[0]) and None)  # the 8x8 block
    g(latent), g(changed)
    torch.testing.assert_close(captured[0], captured[1])


def test_fine_generator_takes_the_downsampled_image():
    torch.manual_seed(0)
    g = StyleGANGenerator(2, 4, resolution=32, channels=3, input_resolution=8, **TINY)
    assert g.condition_dim == 3 * 8 * 8 and g.latent_dim == 2 + 4 + 192
    latent = torch.randn(2, g.latent_dim)
    c, z, image = g.split_latent(latent)
    assert image.shape == (2, 3, 8, 8) and torch.equal(c, latent[:, :2])
    other = latent.clone()
    other[:, 6:] = torch.randn(2, 192)
    assert not torch.allclose(g(latent), g(other))
    assert len(g.blocks) == 2  # 16 and 32: the blocks up to 8x8 are replaced


def test_fine_codes_come_from_the_intermediate_block():
    torch.manual_seed(0)
    d = StyleGANDiscriminator(3, resolution=32, channels=1, channel_base=256, channel_max=16, fine_codes=1,
                              fine_resolution=16)
    x = torch.randn(2, 1, 32, 32)
    captured = []
    d.fine_head.register_forward_hook(lambda m, i, o: captured.append(o) and None)
    _, codes = d(x)
    torch.testing.assert_close(codes[:, 2:], captured[0])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="resolution must be a power of two"):
        StyleGANGenerator(2, resolution=48)
    with pytest.raises(ValueError, match="input_resolution .* must be below"):
        StyleGANGenerator(2, resolution=32, input_resolution=32)
    with pytest.raises(ValueError, match=r"latents of shape \(B, 6\)"):
        StyleGANGenerator(2, 4, resolution=8, **TINY)(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"images of shape \(B, 1, 16, 16\)"):
        StyleGANDiscriminator(2, resolution=16)(torch.randn(2, 3, 16, 16))


def test_deterministic_mode_upsamples_by_slices_that_equal_bilinear_interpolation():
    """CUDA's bilinear-upsample backward is non-deterministic (and refused under
    ``torch.use_deterministic_algorithms``); the deterministic form, slices and weighted sums, is the
    same map, forward and backward (float64)."""
    from gans.networks.stylegan import upsample2x

    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    cotangent = torch.randn_like(expected)
    (grad_expected,) = torch.autograd.grad(expected, x, cotangent)
    saved = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        ours = upsample2x(x)
        (grad_ours,) = torch.autograd.grad(ours, x, cotangent)
        assert ours.grad_fn.name() != expected.grad_fn.name()  # the slices, not the interpolation kernel
    finally:
        torch.use_deterministic_algorithms(saved)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(grad_ours, grad_expected, rtol=0, atol=1e-14)
