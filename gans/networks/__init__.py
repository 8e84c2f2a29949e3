"""Networks for the players. Any ``nn.Module`` works: G(z) with z of shape (B, latent_dim),
D(x) returning one logit per sample, shape (B,) or (B, 1) (Semi-StyleGAN: D(x) -> (logits, codes))."""
from gans.networks.images import (
                                  Conv4Discriminator,
                                  Conv4Generator,
                                  DCGANDiscriminator,
                                  DCGANGenerator,
                                  ResBlock,
                                  ResNetDiscriminator,
                                  ResNetGenerator,
)
from gans.networks.mlp import MLPDiscriminator, MLPGenerator
from gans.networks.stylegan import StyleGANDiscriminator, StyleGANGenerator
from gans.networks.toy import AffineGenerator, DiracGenerator, LinearDiscriminator

__all__ = ["AffineGenerator", "Conv4Discriminator", "Conv4Generator", "DCGANDiscriminator", "DCGANGenerator",
           "DiracGenerator", "LinearDiscriminator", "MLPDiscriminator", "MLPGenerator", "ResBlock",
           "ResNetDiscriminator", "ResNetGenerator", "StyleGANDiscriminator", "StyleGANGenerator"]
