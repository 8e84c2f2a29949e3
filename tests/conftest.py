"""Shared fixtures (helpers live in tests/helpers.py)."""
import pytest
import torch


@pytest.fixture
def batch64():
    torch.manual_seed(1)
    return torch.randn(7, 2, dtype=torch.float64), torch.randn(7, 3, dtype=torch.float64)
