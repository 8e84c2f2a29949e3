import math

import pytest
import torch

from runtime.optim import RMSpropTF


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


# -- the preconditioner an adaptive optimizer applies (the preconditioned spectrum) --------------


def stepped(optimizer_cls, grads, **options):
    from runtime.optim import preconditioner

    p = torch.nn.Parameter(torch.zeros(len(grads[0]), dtype=torch.float64))
    optimizer = optimizer_cls([p], **options)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return preconditioner(optimizer)


GRADS = [[1.0, -2.0, 0.5], [0.3, 4.0, -1.0]]


def test_preconditioner_of_each_adaptive_optimizer_by_hand():
    g1, g2 = (torch.tensor(g, dtype=torch.float64) for g in GRADS)
    ms = 0.9 * (0.9 + 0.1 * g1 ** 2) + 0.1 * g2 ** 2  # TF: the accumulator starts at one
    assert torch.allclose(stepped(RMSpropTF, GRADS, lr=0.1, decay=0.9, eps=1e-10), 1 / torch.sqrt(ms + 1e-10), rtol=1e-14)
    v = 0.99 * 0.01 * g1 ** 2 + 0.01 * g2 ** 2
    assert torch.allclose(stepped(torch.optim.RMSprop, GRADS, lr=0.1, alpha=0.99, eps=1e-8), 1 / (v.sqrt() + 1e-8), rtol=1e-14)
    mean = 0.99 * 0.01 * g1 + 0.01 * g2
    assert torch.allclose(stepped(torch.optim.RMSprop, GRADS, lr=0.1, alpha=0.99, centered=True),
                          1 / ((v - mean ** 2).sqrt() + 1e-8), rtol=1e-14)
    v = 0.999 * 0.001 * g1 ** 2 + 0.001 * g2 ** 2
    hat = v / (1 - 0.999 ** 2)
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        assert torch.allclose(stepped(cls, GRADS, lr=1e-3, betas=(0.5, 0.999)), 1 / (hat.sqrt() + 1e-8), rtol=1e-14)
    largest = torch.maximum(0.001 * g1 ** 2, v)  # amsgrad: the largest v so far, then bias-corrected
    assert torch.allclose(stepped(torch.optim.Adam, GRADS, lr=1e-3, amsgrad=True),
                          1 / ((largest / (1 - 0.999 ** 2)).sqrt() + 1e-8), rtol=1e-14)
    total = g1 ** 2 + g2 ** 2
    assert torch.allclose(stepped(torch.optim.Adagrad, GRADS, lr=0.1, eps=1e-10), 1 / (total.sqrt() + 1e-10), rtol=1e-14)
    assert torch.equal(stepped(torch.optim.SGD, GRADS, lr=0.1), torch.ones(3, dtype=torch.float64))


def test_preconditioner_scales_each_group_by_its_learning_rate_and_refuses_what_it_cannot_read():
    from runtime.optim import preconditioner

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1)
    assert torch.equal(preconditioner(optimizer), torch.tensor([1.0, 1.0, 0.5, 0.5, 0.5]))
    with pytest.raises(TypeError, match="no preconditioner for Adadelta.*preconditioned=False"):
        preconditioner(torch.optim.Adadelta([a]))
    with pytest.raises(ValueError, match="no second-moment estimate before its first step"):
        preconditioner(torch.optim.Adam([a]))
