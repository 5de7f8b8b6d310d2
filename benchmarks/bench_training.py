#!/usr/bin/env python
"""Training throughput on CPU (or CUDA when present) for a preset (default ``paper``: EfficientNet-B1,
240x120 images, batch 64), side by side with a plain eager PyTorch loop on the same data and weights.

Prints:
- training images/s of ``inference.ml.training.train_fold`` (augmentation, class-weighted loss, cosine lr,
  per-epoch checkpoint and validation included; validation images are not counted);
- training images/s of a plain eager loop (model(x), BCE, backward, Adam step; no augmentation), and the ratio;
- the data-loading rate alone (float16 .npy files read from disk, stacked, resized to the model input and
  augmented, as the fold job and the trainer do) and its ratio to the training rate (should be >= 5x);
- peak resident memory of this process (one fold worker).

Usage: ``python benchmarks/bench_training.py [--preset paper] [--images 256] [--threads 2]``
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--images", type=int, default=256, help="training images (one epoch)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F

    from inference.ml.augment import augment_batch
    from inference.ml.presets import preset_config
    from inference.ml.training import FoldData, fresh_model, to_input, train_fold

    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cfg = preset_config(args.preset, {"epochs": 1})
    side = cfg["input_side_px"]
    stored = cfg["image"]["side_px"]
    rng = np.random.default_rng(0)
    n, n_val = args.images, 16
    tmp = Path(tempfile.mkdtemp(prefix="bench-training-"))
    # the stored images, as the 2.5D job writes them (float16 .npy, one per image)
    x_all = rng.random((n + n_val, 3, stored, 2 * stored), dtype=np.float32).astype(np.float16)
    y_all = (np.arange(n + n_val) % 3 == 0).astype(int)
    paths = []
    for i, img in enumerate(x_all):
        paths.append(tmp / f"{i:05d}.npy")
        np.save(paths[-1], img)
    print(f"device {device}, threads {args.threads}, preset {args.preset}: {cfg['backbone']} "
          f"{2 * side}x{side}, batch {cfg['batch_size']}, {n} training images")

    # data loading alone: read, stack, resize to the model input, augment
    gen = torch.Generator().manual_seed(0)
    t = time.perf_counter()
    for s in range(0, n, cfg["batch_size"]):
        batch = np.stack([np.load(p) for p in paths[s:s + cfg["batch_size"]]])
        augment_batch(to_input(batch, side), cfg["augment"], gen)
    load_rate = n / (time.perf_counter() - t)

    model, _ = fresh_model(cfg)
    torch.save(model.state_dict(), tmp / "init.pt")
    data = FoldData(x_all[:n], y_all[:n], x_all[n:], y_all[n:])

    # plain eager loop, same model, data already in memory at the input size; timed before and after ours,
    # the faster of the two kept (the baseline gets the benefit of any warm-up or machine noise)
    xs, ys = to_input(x_all[:n], side), torch.as_tensor(y_all[:n], dtype=torch.float32)

    def plain_loop() -> float:
        plain, _ = fresh_model(cfg)
        plain.load_state_dict(torch.load(tmp / "init.pt", weights_only=True))
        plain.to(device).train()
        opt = torch.optim.Adam(plain.parameters(), lr=cfg["lr"])
        t0 = time.perf_counter()
        for s in range(0, n, cfg["batch_size"]):
            xb, yb = xs[s:s + cfg["batch_size"]].to(device), ys[s:s + cfg["batch_size"]].to(device)
            opt.zero_grad()
            F.binary_cross_entropy_with_logits(plain(xb).reshape(-1), yb).backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)

    plain_rates = [plain_loop()]

    # ours: train_fold for one epoch (minus its validation pass, timed separately via a tiny val set)
    t = time.perf_counter()
    train_fold(cfg, tmp / "init.pt", data, tmp / "fold0", device=device)
    ours_rate = n / (time.perf_counter() - t)
    plain_rates.append(plain_loop())
    plain_rate = max(plain_rates)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"training (ours, train_fold incl. augmentation, {n_val}-image validation, checkpoints): "
          f"{ours_rate:8.1f} images/s")
    print(f"training (plain eager loop, no augmentation):                                  {plain_rate:8.1f} images/s")
    print(f"ratio ours / plain:                                                           {ours_rate / plain_rate:8.2f}x")
    print(f"data loading alone (read .npy, stack, resize, augment):                        {load_rate:8.1f} images/s")
    print(f"loading rate / training rate:                                                 {load_rate / ours_rate:8.1f}x "
          f"({'OK' if load_rate >= 5 * ours_rate else 'BELOW 5x'})")
    print(f"peak resident memory of this worker process: {peak_mb:.0f} MB")
    if device == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
