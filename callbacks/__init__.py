"""Lightning callbacks: diagnostics and metrics computed during training."""
from callbacks.mixture_metrics import MixtureMetrics, mixture_metrics

__all__ = ["MixtureMetrics", "mixture_metrics"]
