"""Metric math as functions and small networks, apart from the callbacks that schedule and write
them: coverage of mixtures (``mixture``), disentanglement (``disentanglement``), the feature
extractors of the Frechet distance (``features``, ``fid``), the independent evaluator encoder
(``evaluator``) and the cache they share (``cache``). The spectrum of the game's Jacobian lives
next to the game algebra (``spectra.spectrum``)."""
