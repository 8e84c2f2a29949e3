"""Lightning callbacks: the plumbing that schedules evaluations during training and writes their
results (the metrics' math is in ``metrics`` and ``spectra.spectrum``, the figures in ``figures``)."""
from callbacks.checkpoint import FinalCheckpoint
from callbacks.factor_metrics import DisentanglementMetrics
from callbacks.fid import FID
from callbacks.image_grid import ImageGrid
from callbacks.jacobian_spectrum import JacobianSpectrum
from callbacks.mixture_metrics import MixtureMetrics
from callbacks.progress import IterationProgressBar

__all__ = ["DisentanglementMetrics", "FID", "FinalCheckpoint", "ImageGrid", "IterationProgressBar", "JacobianSpectrum",
           "MixtureMetrics"]
