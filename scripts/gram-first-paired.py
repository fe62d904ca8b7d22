"""Paired timing of the Gram bound's first product from the kernel (``first="kernel"``) against the transfer
matrices (``first="transfer"``), functional/gram.py.

Per layer shape (random float32 kernel, circular, T = 6, ``products``/``screen`` at their defaults): the bound with
no gradient, and the bound with its backward pass (the training penalty), the two forms in turn (median over
rounds, median of the per-round ratios); the largest relative difference between the two bounds; and which form
``first="auto"`` takes (``auto_first``: a flop count with a measured slack and a minimum side). Then the
whole-network bounds of two models (``network_svs``), ``first="auto"`` (chosen per layer) against ``"transfer"``.
One thread.
Run: ``OMP_NUM_THREADS=1 python scripts/gram-first-paired.py``.
"""

from __future__ import annotations

import torch

from svbench.functional.gram import auto_first, auto_products, gram_iteration_bound
from svbench.functional.transfer import unique_frequency_taps
from svbench.measure.timing import alternated_ms, paired_cpu_script
from svbench.methods import create_method
from svbench.models import build_model

# (c_in, c_out, k, n, stride)
SHAPES = [(8, 8, 3, 16, 1), (16, 16, 3, 8, 1), (16, 16, 3, 16, 1), (16, 16, 3, 32, 1), (32, 32, 3, 8, 1),
          (32, 32, 3, 16, 1), (32, 32, 3, 32, 1), (64, 64, 3, 4, 1), (64, 64, 3, 8, 1), (64, 64, 3, 16, 1),
          (64, 64, 3, 32, 1), (128, 128, 3, 8, 1), (128, 128, 3, 16, 1), (16, 32, 3, 16, 2), (32, 64, 3, 16, 2),
          (64, 128, 3, 16, 2), (64, 64, 5, 16, 1), (32, 32, 5, 8, 1), (64, 64, 1, 16, 1), (64, 128, 1, 16, 2)]
QUICK = [(8, 8, 3, 8, 1), (16, 32, 3, 8, 2)]


def rule(c_in: int, c_out: int, k: int, n: int, stride: int) -> str:
    """``first="auto"``'s choice for this layer on a CPU (``functional.gram.auto_first``)."""
    w = torch.zeros(c_out, c_in, k, k)
    taps, _, idx, _ = unique_frequency_taps(w, n, stride)
    p, q, t = taps.shape[0], taps.shape[1], taps.shape[-1]
    f = 1 if t == 1 else idx.numel()
    real = auto_products("cpu", f, min(p, q)) == "real"
    return auto_first("cpu", f, p, q, t, real)


def layer_row(shape: tuple[int, int, int, int, int], rounds: int, reps: int) -> str:
    c_in, c_out, k, n, stride = shape
    w = torch.randn(c_out, c_in, k, k) / (k * c_in**0.5)
    with torch.no_grad():
        kern, tran = (gram_iteration_bound(w, n, stride, first=f) for f in ("kernel", "transfer"))
        diff = float(abs(kern - tran) / tran)
        t_k, t_t, ratio = alternated_ms(lambda: gram_iteration_bound(w, n, stride, first="kernel"),
                                        lambda: gram_iteration_bound(w, n, stride, first="transfer"), rounds, reps)
    wg = w.clone().requires_grad_(True)

    def backward(first: str):
        def call():
            wg.grad = None
            gram_iteration_bound(wg, n, stride, first=first).backward()
        return call

    b_k, b_t, b_ratio = alternated_ms(backward("kernel"), backward("transfer"), rounds, reps)
    return (f"| {c_in}->{c_out} k{k} n{n} s{stride} | {t_t:.2f} | {t_k:.2f} | {1 / ratio:.2f} | {b_t:.2f} | "
            f"{b_k:.2f} | {1 / b_ratio:.2f} | {diff:.1e} | {rule(*shape)} |")


def network_row(name: str, shape: tuple[int, int, int], rounds: int, reps: int) -> str:
    model = build_model(name, in_channels=shape[0], image_size=shape[1]).eval()
    forms = {f: create_method("gram", first=f) for f in ("auto", "transfer")}
    with torch.no_grad():
        a, b = (forms[f].network_svs(model, shape) for f in ("auto", "transfer"))
        diff = max(float(abs(a[k] - b[k]).max() / b[k].max()) for k in a)
        t_k, t_t, ratio = alternated_ms(lambda: forms["auto"].network_svs(model, shape),
                                        lambda: forms["transfer"].network_svs(model, shape), rounds, reps)
    return (f"| {name} {shape[1]}x{shape[2]}, all convs, `auto` in the kernel column | {t_t:.2f} | {t_k:.2f} | "
            f"{1 / ratio:.2f} | – | – | – | {diff:.1e} | – |")


def main(argv: list[str] | None = None) -> int:
    args = paired_cpu_script(argv, __doc__.splitlines()[0], "T = 6, float32, random kernels",
                             quick_help="two small shapes, one round (a check)")
    rounds, reps = args.rounds, args.reps
    print("| layer | bound transfer ms | bound kernel ms | transfer / kernel | +backward transfer ms | "
          "+backward kernel ms | transfer / kernel | rel. diff | auto takes |\n|---|---|---|---|---|---|---|---|---|")
    for shape in QUICK if args.quick else SHAPES:
        print(layer_row(shape, rounds, reps), flush=True)
    if not args.quick:
        print(network_row("small_cnn", (1, 28, 28), rounds, reps), flush=True)
        print(network_row("resnet18", (3, 32, 32), 5, 1), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
