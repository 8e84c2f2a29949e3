"""Lightning callbacks: diagnostics and metrics computed during training."""
from callbacks.factor_metrics import DisentanglementMetrics
from callbacks.fid import FID
from callbacks.image_grid import ImageGrid
from callbacks.jacobian_spectrum import JacobianSpectrum
from callbacks.mixture_metrics import MixtureMetrics, mixture_metrics
from callbacks.spectrum import SpectrumResult, compute_spectrum

__all__ = ["DisentanglementMetrics", "FID", "ImageGrid", "JacobianSpectrum", "MixtureMetrics", "SpectrumResult", "compute_spectrum",
           "mixture_metrics"]
