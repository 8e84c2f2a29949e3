"""The command-line programs, apart from the library they use:

    python train.py ...                        (commands.train: train a model; python -m commands.train too)
    python -m commands.sample CHECKPOINT       samples and a picture
    python -m commands.spectrum CHECKPOINT     the Jacobian spectrum
    python -m commands.fid CHECKPOINT          FID (and KID)
    python -m commands.edit CHECKPOINT IMAGE   edit a real image's factor (Semi-StyleGAN)
"""
