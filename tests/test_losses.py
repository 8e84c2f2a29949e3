import math

import pytest
import torch

from game.losses import LOSSES, get_loss

D_REAL = torch.tensor([0.5, -1.0], dtype=torch.float64)
D_FAKE = torch.tensor([2.0, 0.0], dtype=torch.float64)


def softplus(t):
    return math.log1p(math.exp(t))


def test_non_saturating_by_hand():
    loss_g, loss_d = get_loss("ns")(D_REAL, D_FAKE)
    expected_d = (softplus(-0.5) + softplus(1.0)) / 2 + (softplus(2.0) + softplus(0.0)) / 2
    expected_g = (softplus(-2.0) + softplus(0.0)) / 2
    assert loss_d.item() == pytest.approx(expected_d, rel=1e-12)
    assert loss_g.item() == pytest.approx(expected_g, rel=1e-12)


def test_zero_sum_is_minus_discriminator_loss():
    loss_g, loss_d = get_loss("zero_sum")(D_REAL, D_FAKE)
    assert loss_d.item() == pytest.approx((softplus(-0.5) + softplus(1.0) + softplus(2.0) + softplus(0.0)) / 2)
    assert loss_g.item() == -loss_d.item()


def test_hinge_by_hand():
    loss_g, loss_d = get_loss("hinge")(D_REAL, D_FAKE)
    # relu(1 - 0.5) = 0.5, relu(1 + 1) = 2 -> 1.25; relu(1 + 2) = 3, relu(1 + 0) = 1 -> 2
    assert loss_d.item() == pytest.approx(1.25 + 2.0)
    assert loss_g.item() == pytest.approx(-1.0)


def test_wasserstein_by_hand():
    loss_g, loss_d = get_loss("wasserstein")(D_REAL, D_FAKE)
    assert loss_d.item() == pytest.approx(1.0 - (-0.25))
    assert loss_g.item() == pytest.approx(-1.0)


def test_unknown_loss_lists_choices():
    with pytest.raises(ValueError, match="unknown loss 'bce'.*ns, zero_sum, hinge, wasserstein"):
        get_loss("bce")


def test_registry_names():
    assert set(LOSSES) == {"ns", "zero_sum", "hinge", "wasserstein"}
