import math

import pytest
import torch

from gans.optim import RMSpropTF


def test_rmsprop_tf_by_hand():
    """ms starts at one, eps sits inside the root: two steps computed by hand."""
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.1, decay=0.9, eps=1e-10)
    x, ms = [1.0, -2.0], [1.0, 1.0]
    for g in ([0.5, -3.0], [-1.0, 2.0]):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for i in range(2):
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] ** 2
            x[i] -= 0.1 * g[i] / math.sqrt(ms[i] + 1e-10)
    assert p.tolist() == pytest.approx(x, rel=1e-12)


def test_rmsprop_tf_momentum_by_hand():
    p = torch.nn.Parameter(torch.tensor([0.0], dtype=torch.float64))
    opt = RMSpropTF([p], lr=0.1, decay=0.5, momentum=0.9)
    x, ms, mom = 0.0, 1.0, 0.0
    for g in (1.0, 1.0, -2.0):
        p.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        ms = 0.5 * ms + 0.5 * g * g
        mom = 0.9 * mom + 0.1 * g / math.sqrt(ms + 1e-10)
        x -= mom
    assert p.item() == pytest.approx(x, rel=1e-12)


def test_rmsprop_tf_skips_params_without_grad_and_checks_arguments():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = RMSpropTF([a, b], lr=0.1)
    a.grad = torch.ones(2)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(2)) and b not in opt.state
    with pytest.raises(ValueError, match="invalid RMSpropTF"):
        RMSpropTF([a], lr=0.1, decay=1.5)
