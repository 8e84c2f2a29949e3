"""What every layer shares, in plain PyTorch: named random streams, threads per process,
averaging across processes and rank 0's decisions, precision (TF32), interrupts, the divergence
guard, checkpoint files, optimizers and their flat buffers."""
