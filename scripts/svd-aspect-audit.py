"""The CPU ``auto`` crossover between the float32 LAPACK SVD and the float64 Gram (``eigh64``) by matrix aspect.

Two tables (reports/cpu-performance.md, session 10): (1) accuracy: max |sigma - float64| / sigma_max of the float32
SVD over SEEDS seeded Gaussian kernels per transfer shape (c_out x c_in, k = 3, n = 8, stride 1); (2) time:
``svdvals`` against ``eigh64`` on the same kernel, alternated (``alternated_ms``), wide and tall. Run alone (other
jobs on the machine skew the paired times): ``OMP_NUM_THREADS=1 python scripts/svd-aspect-audit.py [--quick]``.
"""

from __future__ import annotations

import argparse

import torch

from svbench.functional.spectrum import unique_frequency_singular_values
from svbench.measure.env import device_name
from svbench.measure.timing import alternated_ms

ACCURACY_SHAPES = [(64, 128), (96, 192), (128, 256), (144, 288), (64, 160), (96, 240), (128, 320), (144, 360),
                   (48, 128), (96, 256), (64, 176), (128, 352), (112, 320), (144, 400)]
TIME_SHAPES = [(64, 96), (96, 64), (64, 128), (128, 64), (48, 96), (96, 48), (96, 192), (192, 96), (128, 192),
               (192, 128), (64, 160), (160, 64), (128, 256), (256, 128), (96, 240), (144, 288)]


def _kernel(p: int, q: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p, q, 3, 3, generator=g) / (3 * q**0.5)


def accuracy(shapes: list[tuple[int, int]], seeds: int, n: int = 8) -> None:
    print("| p x q | aspect | max over seeds | median |\n|---|---|---|---|")
    for p, q in shapes:
        errs = []
        for s in range(seeds):
            w = _kernel(p, q, 1000 * s + p + q)
            got, _ = unique_frequency_singular_values(w, n, 1, backend="svdvals")
            want, _ = unique_frequency_singular_values(w, n, 1, backend="svdvals64")
            errs.append(float((got.double() - want).abs().max() / want.max()))
        errs.sort()
        print(f"| {p} x {q} | {max(p, q) / min(p, q):.2f} | {errs[-1]:.2e} | {errs[len(errs) // 2]:.2e} |",
              flush=True)


def timing(shapes: list[tuple[int, int]], rounds: int, reps: int, n: int = 8) -> None:
    print("| p x q | aspect | svdvals ms | eigh64 ms | svdvals / eigh64 |\n|---|---|---|---|---|")
    for p, q in shapes:
        w = _kernel(p, q, p * q)

        def svd() -> object:
            return unique_frequency_singular_values(w, n, 1, backend="svdvals")

        def gram64() -> object:
            return unique_frequency_singular_values(w, n, 1, backend="eigh64")

        svd(), gram64()
        a, b, ratio = alternated_ms(svd, gram64, rounds, reps)
        print(f"| {p} x {q} | {max(p, q) / min(p, q):.2f} | {a:.1f} | {b:.1f} | {ratio:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two shapes, two seeds, one round (a check)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"device: cpu ({device_name('cpu')}), torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    if args.quick:
        accuracy([(8, 20), (20, 8)], 2)
        timing([(8, 20)], 1, 1)
    else:
        accuracy(ACCURACY_SHAPES, 10)
        print()
        timing(TIME_SHAPES, 9, 3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
