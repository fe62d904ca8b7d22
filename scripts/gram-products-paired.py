"""Paired timing of the Gram bound's two product forms (issue 6): ``products: real`` vs ``complex``, interleaved.

Unpaired suite cells on this project's shared CPU VM drift by 10-25 % between identical configurations of one run,
so the crossover behind ``products: auto`` (functional/gram.py, REAL_PRODUCTS_MIN_SIDE) is measured here by
alternating the two forms on the same kernel: ROUNDS rounds, each the median of REPS calls of either form, in turn;
the table holds the median over rounds of each form and the median of the per-round ratios. Forward (the bound) and
forward + backward (the training penalty). Run: ``OMP_NUM_THREADS=1 python scripts/gram-products-paired.py``.
"""

from __future__ import annotations

import sys

import torch

from svbench.functional.gram import gram_iteration_bound
from svbench.measure.env import device_name
from svbench.measure.timing import alternated_ms

SHAPES = [(8, 8), (16, 8), (16, 32), (32, 16), (48, 16), (64, 16), (96, 16), (128, 8), (160, 8), (256, 4)]
ROUNDS, REPS = 15, 3


def main(shapes: list[tuple[int, int]] = SHAPES, rounds: int = ROUNDS, reps: int = REPS) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"device: cpu ({device_name('cpu')}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"T = 6, {rounds} rounds x {reps} calls, float32\n")
    print("| c | n | fwd real ms | fwd complex ms | complex / real | fwd+bwd real ms | fwd+bwd complex ms | "
          "complex / real |")
    print("|---|---|---|---|---|---|---|---|")
    for c, n in shapes:
        w = torch.randn(c, c, 3, 3)
        wg = w.clone().requires_grad_(True)
        runs = {
            "fwd": {p: (lambda p=p: gram_iteration_bound(w, n, 1, 6, products=p)) for p in ("real", "complex")},
            "bwd": {p: (lambda p=p: gram_iteration_bound(wg, n, 1, 6, products=p).backward())
                    for p in ("real", "complex")},
        }
        cells = []
        for kind in ("fwd", "bwd"):
            for fn in runs[kind].values():
                fn()  # warm-up
            cplx, real, ratio = alternated_ms(runs[kind]["complex"], runs[kind]["real"], rounds, reps)
            cells += [f"{real:.3g}", f"{cplx:.3g}", f"{ratio:.2f}"]
        print(f"| {c} | {n} | " + " | ".join(cells) + " |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
