"""The graph-mode reference of the fast-step issue, on this machine: the JARE authors' ring
experiment (TensorFlow 1 style, ``tf.compat.v1`` graph and session) timed per iteration, so that
our step can be compared with it side by side instead of with figures from another computer.

The graph follows the authors' synthetic experiment as the reference note describes it: 8
Gaussians on a ring of radius 2 (std 0.06) sampled inside the graph, z ~ N(0, 4 I) in 64-d, G and
D 4 x 256 ReLU MLPs, batch 128, the zero-sum ("JS") loss, each player's gradient by its own
``tf.gradients`` call, the regulariser gradients by one more call per player (JARE) or one call
over all variables (ConOpt), and TF's RMSProp (lr 1e-4). It is written here from that description.

TensorFlow is not a dependency of gan-dynamics; install it in a separate environment and point
``step_cost.py --tf-python`` at that interpreter::

    python -m venv /tmp/tfenv && /tmp/tfenv/bin/pip install tensorflow-cpu
    /tmp/tfenv/bin/python -m benchmarks.tf_reference --methods simgd jare conopt
    python -m benchmarks.step_cost --sizes ring256 --tf-python /tmp/tfenv/bin/python

``--threads`` and ``--inter-threads`` set TensorFlow's intra- and inter-op thread pools: with one
inter-op thread TF runs one operation at a time, as eager PyTorch does (docs/benchmarks.md).
Prints one JSON object: {method: median ms per iteration}, plus the TensorFlow version.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def build(tf, method: str, *, width: int, depth: int, latent: int, batch: int, gamma: float):
    """The training op of ``method`` on a fresh graph."""
    v1 = tf.compat.v1

    def mlp(x, outputs: int, scope: str):
        with v1.variable_scope(scope, reuse=v1.AUTO_REUSE):
            for i in range(depth + 1):
                last = i == depth
                w = v1.get_variable(f"w{i}", [x.shape[-1], outputs if last else width],
                                    initializer=v1.glorot_uniform_initializer())
                b = v1.get_variable(f"b{i}", [outputs if last else width], initializer=v1.zeros_initializer())
                x = tf.matmul(x, w) + b
                x = x if last else tf.nn.relu(x)
        return x

    angles = 2 * math.pi * tf.cast(tf.range(batch) % 8, tf.float32) / 8
    modes = 2.0 * tf.stack([tf.cos(angles), tf.sin(angles)], axis=1)
    real = modes + 0.06 * tf.random.normal([batch, 2])
    z = tf.random.normal([batch, latent], stddev=2.0)
    d_real = tf.squeeze(mlp(real, 1, "discriminator"), -1)
    d_fake = tf.squeeze(mlp(mlp(z, 2, "generator"), 1, "discriminator"), -1)
    xent = tf.nn.sigmoid_cross_entropy_with_logits
    loss_d = tf.reduce_mean(xent(logits=d_real, labels=tf.ones_like(d_real))) + \
        tf.reduce_mean(xent(logits=d_fake, labels=tf.zeros_like(d_fake)))
    loss_g = -loss_d
    vars_g = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope="generator")
    vars_d = v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope="discriminator")
    grads_g, grads_d = tf.gradients(loss_g, vars_g), tf.gradients(loss_d, vars_d)

    def half_sq(grads):
        return 0.5 * tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads])

    if method == "jare":
        corr_g, corr_d = tf.gradients(half_sq(grads_d), vars_g), tf.gradients(half_sq(grads_g), vars_d)
        grads_g = [g + gamma * c for g, c in zip(grads_g, corr_g)]
        grads_d = [g + gamma * c for g, c in zip(grads_d, corr_d)]
    elif method == "conopt":
        corr = tf.gradients(half_sq(grads_g + grads_d), vars_g + vars_d)
        both = [g + gamma * c for g, c in zip(grads_g + grads_d, corr)]
        grads_g, grads_d = both[:len(vars_g)], both[len(vars_g):]
    elif method != "simgd":
        raise ValueError(f"method must be simgd, jare or conopt, got {method!r}")
    optimizer = v1.train.RMSPropOptimizer(1e-4)
    return optimizer.apply_gradients(list(zip(grads_d + grads_g, vars_d + vars_g)))


def time_method(tf, method: str, args) -> float:
    """Median over ``repeats`` blocks of the mean ms per ``sess.run(train_op)``."""
    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(0)
        train_op = build(tf, method, width=args.width, depth=args.depth, latent=args.latent, batch=args.batch,
                         gamma={"jare": 1000.0, "conopt": 10.0}.get(method, 0.0))
        init = v1.global_variables_initializer()
    config = v1.ConfigProto(intra_op_parallelism_threads=args.threads, inter_op_parallelism_threads=args.inter_threads or args.threads)
    with v1.Session(graph=graph, config=config) as sess:
        sess.run(init)
        for _ in range(args.warmup):
            sess.run(train_op)
        blocks = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(args.iterations):
                sess.run(train_op)
            blocks.append((time.perf_counter() - start) / args.iterations * 1e3)
    return statistics.median(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=["simgd", "jare", "conopt"])
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--latent", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads")
    parser.add_argument("--inter-threads", type=int, default=0, help="inter-op threads (0: as --threads)")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=40)
    args = parser.parse_args()
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    out = {"tensorflow": tf.__version__, "ms": {m: time_method(tf, m, args) for m in args.methods}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
