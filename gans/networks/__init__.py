"""Networks for the players. Any ``nn.Module`` works: G(z) with z of shape (B, latent_dim),
D(x) returning one logit per sample, shape (B,) or (B, 1)."""
from gans.networks.mlp import MLPDiscriminator, MLPGenerator
from gans.networks.toy import AffineGenerator, DiracGenerator, LinearDiscriminator

__all__ = ["AffineGenerator", "DiracGenerator", "LinearDiscriminator", "MLPDiscriminator", "MLPGenerator"]
