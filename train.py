"""Train a GAN: ``python train.py --model jare`` (see ``commands/train.py`` and the README)."""
import mkl_on_amd  # noqa: I001 (before torch: it can only act before torch is loaded)

mkl_on_amd.enable()

from commands.train import main  # noqa: E402

if __name__ == "__main__":
    main()
