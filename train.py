"""Train a GAN: ``python train.py --model jare`` (see ``commands/train.py`` and the README)."""
from commands.train import main

if __name__ == "__main__":
    main()
