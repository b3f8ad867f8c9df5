"""Predictor call overhead: ``OfflinePredictor`` vs a bare ``Session.run`` of the same graph.

For each model and batch size, both are timed on the same session, fetching the same tensors with
the same input array: the predictor as ``pred(x)`` (input checks + ``Session.make_callable``), the
bare baseline as ``sess.run(fetches, feed_dict={placeholder: x})``. Calls alternate in pairs
(A B, B A, ...) until each method has run ``--min-time-s`` and at least ``--min-pairs`` times, so
load from other processes hits both alike. Weights are random (``strict=False``): speed does not
depend on their values.

Columns: images/s = batch / median call time; overhead % = median over pairs of
(predictor time / session.run time - 1) * 100, negative when the predictor is faster; IQR = its
25th..75th percentiles (how noisy the machine was). A second table gives the fixed per-call cost
of each call path on an almost empty graph, where nothing but that cost is measured (best of
interleaved repeats, since interference only ever adds time).

    python -m bench.engine                # full table, batch 1..256
    python -m bench.engine --quick        # a short run (batch 1, 8, 64; 0.15 s per method and point)
"""
from __future__ import annotations

import argparse
import os
import platform
import time
import timeit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from layers import OfflinePredictor, PredictConfig, disable_layer_logging  # noqa: E402

tfv1 = tf.compat.v1

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUICK_BATCH_SIZES = (1, 8, 64)


def _zoo(name, **options):
    """(ModelDesc, input shape without batch, input names, output tensor names) of a zoo entry."""
    import model_zoo

    zoo = model_zoo.get(name, **options)
    return zoo.model, tuple(zoo.input.shape), zoo.input_names, [o.tensor for o in zoo.outputs[:1]]


# The networks come from the model zoo (the same code the service serves).
MODELS = {
    "mnist": lambda: _zoo("mnist-convnet"),
    "resnet20": lambda: _zoo("cifar10-resnet", depth=20),
}


def measure(pred_fn, bare_fn, min_time_s: float, min_pairs: int):
    """Per-call seconds of both functions, timed in alternating pairs (A B, B A, A B, ...) until each
    has run ``min_time_s`` in total and at least ``min_pairs`` times; load from other processes then
    hits both alike. Returns (predictor times, session.run times) as arrays, pair-aligned."""
    pred_t, bare_t = [], []
    total = 0.0
    clock = time.perf_counter
    while total < 2 * min_time_s or len(pred_t) < min_pairs:
        first, second = ((pred_fn, pred_t), (bare_fn, bare_t)) if len(pred_t) % 2 == 0 else \
            ((bare_fn, bare_t), (pred_fn, pred_t))
        for fn, out in (first, second):
            t0 = clock()
            fn()
            dt = clock() - t0
            out.append(dt)
            total += dt
    return np.array(pred_t), np.array(bare_t)


def bench_model(name, args, rng):
    model, shape, input_names, outputs = MODELS[name]()
    config = PredictConfig(model=model, input_names=input_names, output_names=outputs, strict=False,
                           intra_op_threads=args.threads, inter_op_threads=args.threads)
    rows = []
    with OfflinePredictor(config) as pred:
        sess, fetches, placeholder = pred.session, pred.output_tensors, pred.input_tensors[0]
        for batch in args.batch_sizes:
            x = rng.standard_normal((batch, *shape)).astype(np.float32)
            # same results, and warm-up (first runs allocate / pick kernels)
            for _ in range(3):
                np.testing.assert_allclose(pred(x)[0], sess.run(fetches, {placeholder: x})[0], rtol=1e-5, atol=1e-6)
            pred_t, bare_t = measure(lambda x=x: pred(x), lambda x=x: sess.run(fetches, {placeholder: x}),
                                     args.min_time_s, args.min_pairs)
            ratio = (pred_t / bare_t - 1.0) * 100.0            # paired: same moment, same load
            q25, q50, q75 = np.percentile(ratio, [25, 50, 75])
            rows.append((name, batch, q50))
            print(f"| {name:<8} | {batch:>5} | {batch / np.median(pred_t):>14,.0f} | {batch / np.median(bare_t):>16,.0f} "
                  f"| {q50:>+10.1f} | {q25:>+6.1f} .. {q75:>+6.1f} | {len(pred_t):>5} |", flush=True)
    return rows


def fixed_cost(args):
    """Per-call cost of each call path on an almost empty graph (y = 2x, batch 1): best of interleaved repeats."""
    config = PredictConfig(tower_func=lambda x: tf.multiply(x, 2.0, name="y"), output_names=["y"], strict=False,
                           input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, "input")],
                           intra_op_threads=args.threads, inter_op_threads=args.threads)
    with OfflinePredictor(config) as pred:
        sess, fetches, placeholder = pred.session, pred.output_tensors, pred.input_tensors[0]
        x = np.zeros((1, 28, 28, 1), np.float32)
        raw = sess.make_callable(fetches, feed_list=[placeholder])
        paths = {"predictor pred(x)": lambda: pred(x),
                 "bare make_callable(x)": lambda: raw(x),
                 "bare session.run": lambda: sess.run(fetches, {placeholder: x})}
        number = 200 if args.quick else 300
        best = dict.fromkeys(paths, float("inf"))
        for _ in range(3 if args.quick else 20):          # interleaved repeats; noise only adds time
            for label, fn in paths.items():
                best[label] = min(best[label], timeit.timeit(fn, number=number) / number)
        for label, seconds in best.items():
            print(f"| {label:<22} | {seconds * 1e6:>10.1f} |")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=sorted(MODELS), default=["mnist", "resnet20"],
                   help="models to run (default: both)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                   help=f"batch sizes (default {' '.join(map(str, BATCH_SIZES))}; with --quick "
                        f"{' '.join(map(str, QUICK_BATCH_SIZES))})")
    p.add_argument("--min-time-s", type=float, default=None,
                   help="seconds each method runs per point (default 0.5; --quick 0.15)")
    p.add_argument("--min-pairs", type=int, default=None,
                   help="at least this many calls per method and point (default 20; --quick 6)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra- and inter-op threads of the session (default: TensorFlow's, i.e. all cores)")
    p.add_argument("--seed", type=int, default=0, help="input data seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a short run: fewer batch sizes, shorter timing")
    args = p.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = list(QUICK_BATCH_SIZES if args.quick else BATCH_SIZES)
    if args.min_time_s is None:
        args.min_time_s = 0.15 if args.quick else 0.5
    if args.min_pairs is None:
        args.min_pairs = 6 if args.quick else 20
    if args.min_time_s <= 0 or args.min_pairs < 1 or any(b < 1 for b in args.batch_sizes):
        p.error("--min-time-s must be > 0, --min-pairs >= 1 and batch sizes >= 1")
    disable_layer_logging()
    print(f"TensorFlow {tf.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"threads={'TF default (all cores)' if args.threads is None else args.threads}, "
          f">= {args.min_time_s} s and >= {args.min_pairs} calls per method and point, alternating")
    print("| model    | batch | predictor im/s | session.run im/s | overhead % | IQR (%)          | pairs |")
    print("|----------|------:|---------------:|-----------------:|-----------:|------------------|------:|")
    rng = np.random.default_rng(args.seed)
    rows = []
    for name in args.models:
        rows += bench_model(name, args, rng)
    big = [r for r in rows if r[1] >= 8]
    if big:
        print(f"batch >= 8: overhead worst {max(r[2] for r in big):+.1f} %, mean {np.mean([r[2] for r in big]):+.1f} % "
              "(negative: the predictor is faster than session.run)")
    print()
    print("| fixed cost per call    | µs (best)  |")
    print("|------------------------|-----------:|")
    fixed_cost(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
