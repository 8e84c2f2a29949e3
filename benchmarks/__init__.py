"""The benchmarks, run as modules from the project's root: ``python -m benchmarks.step_cost``.

Importing the package first loads ``mkl_on_amd`` (MKL's fast kernels on AMD processors, as
``train.py`` does), before any benchmark imports torch."""
import mkl_on_amd

mkl_on_amd.enable()
