"""The command-line programs, apart from the library they use:

    python train.py ...                        (commands.train: train a model; python -m commands.train too)
    python -m commands.sample CHECKPOINT       samples and a picture
    python -m commands.spectrum CHECKPOINT     the Jacobian spectrum
    python -m commands.fid CHECKPOINT          FID (and KID)
    python -m commands.edit CHECKPOINT IMAGE   edit a real image's factor (Semi-StyleGAN)
    python -m commands.member CHECKPOINT M     member M of a sweep as an ordinary checkpoint

Importing the package first loads ``mkl_on_amd`` (MKL's fast kernels on AMD processors), which can
only act before torch is loaded: every command gets it, and a script of yours that imports a
command after torch simply keeps MKL's generic path.
"""
import mkl_on_amd

mkl_on_amd.enable()
