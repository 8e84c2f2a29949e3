"""The divergence guard (runtime/divergence.py): which iterations count as non-finite, and what stop
and skip do with them."""
import math

import pytest
import torch

from runtime.divergence import SKIP_WINDOW, DivergenceGuard, NonFiniteError, nonfinite

FINE = torch.tensor(1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_loss_or_direction_entry_is_found(bad):
    assert nonfinite((FINE, FINE), (torch.ones(5), [torch.ones(2, 2)])).item() == 0
    assert nonfinite((torch.tensor(bad), None), (None, None)).item() == 1  # one player's half of an iteration
    flat = torch.ones(5)
    flat[3] = bad
    assert nonfinite((FINE, FINE), (flat, None)).item() == 1
    tensors = [torch.ones(3), torch.ones(2, 2)]
    tensors[1][0, 1] = bad
    assert nonfinite((FINE, None), (None, tensors)).item() == 1


def test_the_check_sums_each_direction():
    """One sum per direction: entries near float32's largest value overflow the sum and count as
    non-finite (no run that trains has such a direction); large finite ones do not."""
    huge = torch.full((4,), 3e38)
    assert nonfinite((FINE,), (huge,)).item() == 1
    assert nonfinite((FINE,), (torch.full((4,), 1e30),)).item() == 0


def test_stop_raises_naming_the_iteration_losses_and_update_norms():
    guard = DivergenceGuard("stop")
    assert guard.may_step(False, 7, (FINE, FINE), (None, None))
    with pytest.raises(NonFiniteError, match=r"iteration 7: non-finite training state \(loss_G=nan, "
                                             r"loss_D=not computed, \|update_G\|=5, \|update_D\|=0\)"):
        guard.may_step(True, 7, (torch.tensor(math.nan), None), (torch.tensor([3.0, 4.0]), None))


def test_skip_skips_until_more_than_half_of_the_window_was_skipped():
    guard = DivergenceGuard("skip")
    for it in range(SKIP_WINDOW // 2):
        assert not guard.may_step(True, it, (FINE, FINE), (None, None))
    assert guard.skipped == SKIP_WINDOW // 2
    with pytest.raises(NonFiniteError, match=f"{SKIP_WINDOW // 2 + 1} of the last {SKIP_WINDOW} iterations"):
        guard.may_step(True, SKIP_WINDOW // 2, (FINE, FINE), (None, None))


def test_old_skips_leave_the_window():
    guard = DivergenceGuard("skip")
    for it in range(0, 10 * SKIP_WINDOW, 2):  # every other iteration, forever: never more than half
        assert not guard.may_step(True, it, (FINE, FINE), (None, None))
    assert guard.skipped == 5 * SKIP_WINDOW and len(guard.recent) == SKIP_WINDOW // 2


def test_the_phases_of_one_alternating_iteration_count_once():
    guard = DivergenceGuard("skip")
    for it in range(0, 2 * SKIP_WINDOW, 2):     # every other iteration, each with a bad D and a bad G phase
        assert not guard.may_step(True, it, (FINE, FINE), (None, None))
        assert not guard.may_step(True, it, (FINE, FINE), (None, None))
    assert guard.skipped == SKIP_WINDOW and len(guard.recent) == SKIP_WINDOW // 2


def test_the_count_survives_a_checkpoint():
    guard = DivergenceGuard("skip")
    for it in (3, 5, 8):
        guard.may_step(True, it, (FINE, FINE), (None, None))
    restored = DivergenceGuard("skip")
    restored.load_state_dict(guard.state_dict())
    assert (restored.skipped, restored.recent) == (3, [3, 5, 8])


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="on_nonfinite must be 'stop' or 'skip', got 'ignore'"):
        DivergenceGuard("ignore")
