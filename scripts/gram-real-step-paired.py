"""Paired timing of the Gram bound's real-form step: A' = A A - (1/2) V V with V = A - A^T (svbench since session
11) against the earlier A' = A A^T + (1/2)(A + A^T) V, which needed one more elementwise pass (A + A^T).

Both are the square of the Hermitian iterate G = S + iK packed as A = S + K (functional/gram.py,
``_gram_iteration_real_parts``); the same value in exact arithmetic. Per layer shape (random float32 kernel,
circular, T = 6, all unique frequencies, no screening): the bound, and the bound with its backward pass, the two
steps alternated (median over rounds, median of the per-round ratios), and the largest relative difference of the
bounds. The script checks that its "new" loop is svbench's (``gram_iteration_matrices(products="real")``).
One thread. Run: ``OMP_NUM_THREADS=1 python scripts/gram-real-step-paired.py``.
"""

from __future__ import annotations

import torch

from svbench.functional.gram import _first_product, _fro, _unique_transfer, gram_iteration_matrices
from svbench.measure.timing import alternated_ms, paired_cpu_script

SHAPES = [(16, 32), (32, 32), (64, 16), (64, 32), (128, 16), (256, 8)]  # (c, n), 3 x 3, stride 1
QUICK = [(8, 8), (32, 4)]


def bounds(mats: torch.Tensor, new: bool, iters: int = 6) -> torch.Tensor:
    g, log_scale = _first_product(mats, "real", True)
    for _ in range(1, iters):
        r = _fro(g)
        log_scale = 2 * (log_scale + torch.log(r))
        a = g * (1 / r)[:, None, None]
        v = a - a.mT
        if new:
            g = (a @ a).baddbmm_(v, v, alpha=-0.5)
        else:
            g = (a @ a.mT).baddbmm_(torch.lerp(v, a, 2.0), v, alpha=0.5)
    return torch.exp((log_scale + torch.log(_fro(g))) / 2**iters)


def row(c: int, n: int, rounds: int, reps: int) -> str:
    w = torch.randn(c, c, 3, 3) / (3 * c**0.5)
    with torch.no_grad():
        mats = _unique_transfer(w, n, 1)
        old, new = bounds(mats, False), bounds(mats, True)
        assert torch.equal(new, gram_iteration_matrices(mats, 6, products="real")), "not svbench's real step"
        diff = float(((old - new) / old).abs().max())
        t_old, t_new, ratio = alternated_ms(lambda: bounds(mats, False), lambda: bounds(mats, True), rounds, reps)
    wg = w.clone().requires_grad_(True)

    def backward(new_step: bool):
        def call():
            wg.grad = None
            bounds(_unique_transfer(wg, n, 1), new_step).amax().backward()
        return call

    b_old, b_new, b_ratio = alternated_ms(backward(False), backward(True), rounds, reps)
    return (f"| {c} | {n} | {mats.shape[0]} | {t_old:.2f} | {t_new:.2f} | {ratio:.2f} | {b_old:.2f} | {b_new:.2f} | "
            f"{b_ratio:.2f} | {diff:.1e} |")


def main(argv: list[str] | None = None) -> int:
    args = paired_cpu_script(argv, __doc__.splitlines()[0], "T = 6, float32, random 3 x 3 kernels",
                             quick_help="two small shapes, one round (a check)")
    rounds, reps = args.rounds, args.reps
    print("| c | n | matrices | A A^T + U V / 2 ms | A A - V V / 2 ms | old / new | +backward old ms | "
          "+backward new ms | old / new | rel. diff |\n|---|---|---|---|---|---|---|---|---|---|")
    for c, n in QUICK if args.quick else SHAPES:
        print(row(c, n, rounds, reps), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
