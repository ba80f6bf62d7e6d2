"""Training speed: is the input pipeline the bottleneck?

Prints training images per second for

(a) ``bare``: MobileNetV2 + the paper's head alone, fed in-memory float32 tensors that are
    already 3-channel and scaled to [-1, 1] (no augmentation, no scaling layers), and
(b) ``pipeline``: the model exactly as :mod:`cxrlib.experiment.cv` trains it, fed the uint8 grayscale
    images it keeps in memory, with casting, augmentation, scaling and channel repetition as
    layers of the model,

for each installed Keras backend (one subprocess each: the backend is fixed at import) and
image size, both through ``model.fit`` with the same optimiser, loss and batch size. The target
is ``pipeline >= 0.9 x bare``. Each figure is the best of ``--repeats`` timed fits of
``--steps`` batches, after one untimed fit that compiles.

    python benchmarks/bench_pipeline.py [--backends tensorflow,jax] [--sizes 64,96,200]
        [--steps 4] [--repeats 2] [--config from_scratch] [--batch-size 32]

On a 2-core CPU TensorFlow takes about 2 minutes for all three sizes; JAX on a CPU is 15-100
times slower per image (its CPU convolutions) and takes over 10 minutes: use
``--backends tensorflow`` or ``--sizes 64,96`` for a quick look. GPU figures need a GPU run.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKEND_MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
N_CLASSES = 7


def images_per_second(model, x, y, batch_size: int, repeats: int) -> float:
    """Best of ``repeats`` timed one-epoch fits over ``x`` (after one compiling fit)."""
    model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size, epochs=1,
              verbose=0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0)
        best = min(best, time.perf_counter() - start)
    return len(x) / best


def bare_model(size: int, strategy: str, trainable_blocks: int):
    """MobileNetV2 + head on 3-channel float input: no augmentation, no scaling."""
    import keras

    from cxrlib.experiment.model import paper_head, set_trainable_blocks

    inputs = keras.Input((size, size, 3))
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None,
                                              input_tensor=inputs)
    model = keras.Model(inputs, paper_head(backbone.output, N_CLASSES))
    set_trainable_blocks(model, strategy, trainable_blocks)
    return model


def worker(args) -> None:
    """Runs inside one backend: prints one JSON line per (size, variant)."""
    import keras
    import numpy as np

    from cxrlib.core.profiles import get_profile, parse_config
    from cxrlib.experiment.model import build_model
    from cxrlib.experiment.training import make_optimizer

    profile = get_profile("default", batch_size=args.batch_size)
    strategy, blocks = parse_config(args.config)
    rng = np.random.default_rng(0)
    n = args.steps * args.batch_size
    y = rng.integers(0, N_CLASSES, n).astype("int32")
    for size in args.sizes:
        images = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
        bare_input = np.repeat(images.astype("float32") / 127.5 - 1.0, 3, axis=-1)
        for variant in ("bare", "pipeline"):
            keras.utils.clear_session(free_memory=True)
            keras.utils.set_random_seed(0)
            if variant == "bare":
                model, x = bare_model(size, strategy, blocks), bare_input
            else:
                model = build_model(strategy, size, N_CLASSES, blocks, weights=None,
                                    shift_pixels=20 * size / 200)
                x = images
            model.compile(optimizer=make_optimizer(profile, args.config),
                          loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            speed = images_per_second(model, x, y, args.batch_size, args.repeats)
            print(json.dumps({"backend": keras.backend.backend(), "size": size,
                              "variant": variant, "images_per_second": speed,
                              "jit_compile": bool(model.jit_compile)}), flush=True)


def installed_backends() -> list[str]:
    return [b for b, m in BACKEND_MODULES.items() if importlib.util.find_spec(m)]


def run_backend(backend: str, args) -> list[dict]:
    command = [sys.executable, __file__, "--worker", "--sizes", ",".join(map(str, args.sizes)),
               "--steps", str(args.steps), "--repeats", str(args.repeats), "--config",
               args.config, "--batch-size", str(args.batch_size)]
    environment = dict(os.environ, KERAS_BACKEND=backend)
    done = subprocess.run(command, env=environment, capture_output=True, text=True)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0:
        print(f"{backend}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
    return rows


def print_table(rows: list[dict], config: str) -> None:
    from cxrlib.core import env

    print(f"training images/s, {config}, device: {env.cpu_description()} "
          f"(GPU runs report their own device)")
    print(f"{'backend':<11} {'size':>5} {'bare':>9} {'pipeline':>9} {'ratio':>6}  jit")
    by_key = {(r["backend"], r["size"], r["variant"]): r for r in rows}
    for backend, size in sorted({(r["backend"], r["size"]) for r in rows}):
        bare = by_key.get((backend, size, "bare"))
        full = by_key.get((backend, size, "pipeline"))
        if not (bare and full):
            continue
        ratio = full["images_per_second"] / bare["images_per_second"]
        print(f"{backend:<11} {size:>5} {bare['images_per_second']:>9.1f} "
              f"{full['images_per_second']:>9.1f} {ratio:>6.2f}  {full['jit_compile']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(installed_backends()))
    parser.add_argument("--sizes", default="64,96,200")
    parser.add_argument("--steps", type=int, default=4, help="batches per timed fit")
    parser.add_argument("--repeats", type=int, default=2, help="timed fits; the best counts")
    parser.add_argument("--config", default="from_scratch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s]
    if args.worker:
        worker(args)
        return
    rows = []
    for backend in [b for b in args.backends.split(",") if b]:
        start = time.perf_counter()
        rows += run_backend(backend, args)
        print(f"({backend}: {time.perf_counter() - start:.0f}s)", file=sys.stderr, flush=True)
    print_table(rows, args.config)


if __name__ == "__main__":
    main()
