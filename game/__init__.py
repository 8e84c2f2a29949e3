"""The game and its methods in plain PyTorch (no Lightning): the algebra of the field and its
Jacobian products (``algebra``), every method's direction (``methods``) and its compiled rule
(``compiled``), the Krylov solvers (``krylov``), the losses and gradient penalties, a GAN as a
two-player game of two networks, a loss and a method (``twoplayer.TwoPlayerGame``), and N games
stacked along a member axis (``stacked``)."""
