"""Paired GPU probes for issue 6 (run 6): the measurements the suite's cells cannot pair, in one short call.

Each section alternates two forms of one operation on the same inputs (``measure.timing.alternated_ms``, the GPU
synchronised after every call) and prints a markdown table; a section that fails prints its error and the next one
runs. Sections:

1. ``tt-fold``: the tt fold of WRN-16-10 at rank 192 (orthogonal init) by CholeskyQR (the default since run 5)
   against the batched Householder QR it replaced, alone and inside the network's SVs.
2. ``gram-products``: the Gram bound's complex and one-matrix real products per layer shape (T = 6), for the
   CUDA crossover of ``products: auto``.
3. ``gesvda``: one gesvda call on B matrices of side m for several B: is the call's time set by m (sequential
   steps) rather than by the batch?
4. ``gram-graph``: WRN-16-10's whole Gram bound (real products) eager against one CUDA-graph replay of it.
5. ``overheads``: the model walk (``conv_inputs``) every network timing includes, against the whole gram bound.
6. ``gram-networks``: the Gram bound of whole networks (WRN-16-10, ResNet-18, VGG-19) with ``products: auto``
   against each fixed form, alternated (run 7's unpaired ResNet-18 auto cell was slower than both forms).
7. ``gram-fused``: the experimental fused Triton step (``products: triton``: tiles of 32 and 64 in float32 FMAs on
   4 and 8 warps, and tiles of 32 / 64 through 3xTF32 tensor-core products) against the real form per layer shape,
   with the largest relative difference of the bounds, and on WRN-16-10's whole bound.
8. ``gram-screen``: the Gram bound of (random) WRN-16-10 with frequency screening on and off: the price of its
   host syncs on CUDA, where ``screen: auto`` leaves it off.
9. ``gram-first``: the Gram bound of whole networks with the first product from the kernel's channel correlations
   (``first: kernel``) against the transfer matrices (``first: transfer``, what ``auto`` keeps on CUDA until this
   is measured): ~6x fewer flops for WRN-16-10's first product, no transfer matrices; and both with the fused
   Triton step.

Run on the device machine: ``PYTHONPATH=. python3 scripts/gpu-probe.py > $OUT/probe.md``; a CPU check with tiny
shapes: ``python scripts/gpu-probe.py --tiny``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable

import torch

from svbench.functional import tt as tt_functional
from svbench.functional.gram import _unique_transfer, gram_iteration_matrices
from svbench.measure.env import device_name
from svbench.measure.timing import alternated_ms
from svbench.methods import create_method
from svbench.methods.base import conv_inputs
from svbench.methods.tt import TTConv2d
from svbench.models.registry import build_model


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    def call() -> object:
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return out
    return call


def paired(fn_a, fn_b, device, rounds, reps) -> tuple[float, float, float]:
    a, b = synced(fn_a, device), synced(fn_b, device)
    a(), b()  # warm-up (plans, handles, allocator)
    return alternated_ms(a, b, rounds, reps)


def _build(name: str, shape: tuple[int, int, int]) -> torch.nn.Module:
    return build_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1])


def section_tt_fold(device, tiny, rounds, reps) -> None:
    model_name, shape, rank = ("small_cnn", (3, 16, 16), 8) if tiny else ("wrn16_10", (3, 32, 32), 192)
    method = create_method("tt", rank=rank, init="orthogonal", keep_first=True)
    model = method.wrap(_build(model_name, shape)).to(device).eval()
    layers = [(m.k1, m.k2, m.k3) for m in model.modules() if isinstance(m, TTConv2d)]
    chol = tt_functional._cholesky_r

    def qr_only(fn):  # the network route does not take the fold's route: swap CholeskyQR out around the call
        def call():
            tt_functional._cholesky_r = lambda k: None
            try:
                return fn()
            finally:
                tt_functional._cholesky_r = chol
        return call

    with torch.no_grad():
        fold = lambda: tt_functional.folded_cores(layers)  # noqa: E731
        fold_qr = lambda: tt_functional.folded_cores(layers, route="qr")  # noqa: E731
        svs = lambda: method.network_svs(model, shape)  # noqa: E731
        new, old = fold(), fold_qr()
        err = max(float((a.abs() - b.abs()).abs().max() / b.abs().max()) for a, b in zip(new, old))
        s_new, s_old = svs(), qr_only(svs)()
        sv_err = max(float((s_new[k] - s_old[k]).abs().max() / s_old[k].max()) for k in s_old)
        print(f"{model_name}, tt rank {rank}, {len(layers)} TT layers; |core| CholeskyQR vs QR max rel diff "
              f"{err:.2e}; network SVs max diff / sigma_max {sv_err:.2e}\n")
        print("| what | CholeskyQR ms | QR ms | QR / CholeskyQR |\n|---|---|---|---|")
        for what, fn, fn_qr in (("fold (R factors + cores)", fold, fold_qr),
                                ("network SVs (fold + lanes)", svs, qr_only(svs))):
            a, b, ratio = paired(fn_qr, fn, device, rounds, reps)
            print(f"| {what} | {b:.2f} | {a:.2f} | {ratio:.3f} |")


def section_gram_products(device, tiny, rounds, reps) -> None:
    shapes = ([(8, 8), (16, 4)] if tiny else
              [(16, 32), (32, 32), (64, 32), (64, 16), (96, 32), (128, 32), (128, 16), (128, 8), (160, 32), (256, 16),
               (256, 8), (256, 4), (320, 16), (512, 8), (512, 4), (512, 2), (640, 8)])
    print("| c | n | frequencies | complex ms | real ms | complex / real |\n|---|---|---|---|---|---|")
    g = torch.Generator(device="cpu").manual_seed(0)
    for c, n in shapes:
        w = (torch.randn(c, c, 3, 3, generator=g) / (3 * c**0.5)).to(device)
        mats = _unique_transfer(w, n, 1)
        with torch.no_grad():
            cplx, real, ratio = paired(lambda: gram_iteration_matrices(mats, 6, products="complex"),
                                       lambda: gram_iteration_matrices(mats, 6, products="real"), device, rounds, reps)
        print(f"| {c} | {n} | {mats.shape[0]} | {cplx:.3f} | {real:.3f} | {ratio:.2f} |")
        sys.stdout.flush()


def section_gesvda(device, tiny, rounds, reps) -> None:
    if device.type != "cuda":
        print("skipped: gesvda is a cuSOLVER driver (CUDA only)")
        return
    grid = [(160, [1, 8, 64, 514]), (320, [1, 8, 34, 130]), (640, [1, 4, 34])]
    print("| m | B | ms per call | ms per matrix |\n|---|---|---|---|")
    g = torch.Generator(device="cpu").manual_seed(1)
    for m, batches in grid:
        for b in batches:
            x = torch.randn(b, m, m, dtype=torch.complex64, generator=g).to(device)
            fn = synced(lambda x=x: torch.linalg.svdvals(x, driver="gesvda"), device)
            fn()
            t, _, _ = alternated_ms(fn, fn, max(1, rounds // 2), reps)
            print(f"| {m} | {b} | {t:.2f} | {t / b:.3f} |")
            sys.stdout.flush()


def _wrn_transfer(device, tiny):
    model_name, shape = ("small_cnn", (3, 16, 16)) if tiny else ("wrn16_10", (3, 32, 32))
    model = _build(model_name, shape).to(device).eval()
    convs = [(layer.weight.detach(), n, layer.stride[0]) for _, layer, n in conv_inputs(model, shape)]
    return model, shape, convs


def section_gram_graph(device, tiny, rounds, reps) -> None:
    if device.type != "cuda":
        print("skipped: CUDA graphs need a GPU")
        return
    _, _, convs = _wrn_transfer(device, tiny)
    with torch.no_grad():
        mats = [_unique_transfer(w, n, s) for w, n, s in convs]
        eager = lambda: [gram_iteration_matrices(m, 6, products="real").amax() for m in mats]  # noqa: E731
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            eager()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static = eager()
        graph.replay()
        torch.cuda.synchronize(device)
        diff = max(abs(float(a) - float(b)) / float(b) for a, b in zip(static, eager()))
        a, b, ratio = paired(eager, graph.replay, device, rounds, reps)
        build, _, _ = paired(lambda: [_unique_transfer(w, n, s) for w, n, s in convs],
                             lambda: None, device, rounds, reps)
    print(f"{len(mats)} convs, real products, T = 6; graph vs eager max rel diff {diff:.1e}\n")
    print("| eager ms | graph replay ms | eager / graph | transfer matrices alone ms |\n|---|---|---|---|")
    print(f"| {a:.2f} | {b:.2f} | {ratio:.2f} | {build:.2f} |")


def section_overheads(device, tiny, rounds, reps) -> None:
    model, shape, _ = _wrn_transfer(device, tiny)
    method = create_method("gram", products="real")
    with torch.no_grad():
        walk, whole, ratio = paired(lambda: conv_inputs(model, shape), lambda: method.network_svs(model, shape),
                                    device, rounds, reps)
    print("| model walk (conv_inputs) ms | gram network bound ms | share |\n|---|---|---|")
    print(f"| {walk:.2f} | {whole:.2f} | {walk / whole:.1%} |")


def section_gram_networks(device, tiny, rounds, reps) -> None:
    models = [("small_cnn", (3, 16, 16))] if tiny else [(m, (3, 32, 32)) for m in ("wrn16_10", "resnet18", "vgg19")]
    print("| model | auto ms | complex ms | real ms | complex / auto | real / auto |\n|---|---|---|---|---|---|")
    for name, shape in models:
        model = _build(name, shape).to(device).eval()
        forms = {p: create_method("gram", products=p) for p in ("auto", "complex", "real")}
        with torch.no_grad():
            calls = {p: (lambda m=m: m.network_svs(model, shape)) for p, m in forms.items()}
            auto, cplx, r_c = paired(calls["auto"], calls["complex"], device, rounds, reps)
            auto2, real, r_r = paired(calls["auto"], calls["real"], device, rounds, reps)
        print(f"| {name} | {auto:.2f} / {auto2:.2f} | {cplx:.2f} | {real:.2f} | {1 / r_c:.2f} | {1 / r_r:.2f} |")
        sys.stdout.flush()


def section_gram_fused(device, tiny, rounds, reps) -> None:
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        print("skipped: the fused Triton step is timed on a GPU (TRITON_INTERPRET=1 runs it slowly on a CPU)")
        return
    from svbench.functional.gram import _gram_iteration_real_parts

    shapes = [(8, 4), (20, 4)] if tiny else [(64, 32), (160, 32), (256, 16), (320, 16), (512, 4), (640, 8)]
    # (tile, input precision, warps): FMAs at tiles 32 / 64 on 4 and 8 warps, 3xTF32 tensor-core tiles at 32 / 64
    variants = [(32, "ieee", 4), (64, "ieee", 4), (64, "ieee", 8), (32, "tf32x3", 4), (64, "tf32x3", 8)]
    if tiny:
        variants = variants[:2]  # the interpreter is slow; the tiny run checks the script, not the speed
    print("| c | n | real ms | " + " | ".join(f"fused {b} {p} w{w} ms | real / it | rel diff" for b, p, w in variants)
          + " |")
    print("|---|---|---|" + "---|---|---|" * len(variants))
    g = torch.Generator(device="cpu").manual_seed(0)
    for c, n in shapes:
        w = (torch.randn(c, c, 3, 3, generator=g) / (3 * c**0.5)).to(device)
        mats = _unique_transfer(w, n, 1)
        cells = []
        with torch.no_grad():
            real = gram_iteration_matrices(mats, 6, products="real")
            for block, prec, warps in variants:
                fused = lambda b=block, p=prec, w=warps: _gram_iteration_real_parts(  # noqa: E731
                    mats, 6, fused=True, block=b, precision=p, warps=w)
                diff = float(((fused() - real) / real).abs().max())
                a, b, ratio = paired(lambda: gram_iteration_matrices(mats, 6, products="real"), fused, device,
                                     rounds, reps)
                cells.append((a, b, ratio, diff))
        print(f"| {c} | {n} | {cells[0][0]:.3f} | "
              + " | ".join(f"{b:.3f} | {ratio:.2f} | {diff:.1e}" for _, b, ratio, diff in cells) + " |")
        sys.stdout.flush()
    model, shape, _ = _wrn_transfer(device, tiny)
    forms = {p: create_method("gram", products=p) for p in ("real", "triton")}
    with torch.no_grad():
        a, b, ratio = paired(lambda: forms["real"].network_svs(model, shape),
                             lambda: forms["triton"].network_svs(model, shape), device, rounds, reps)
    print(f"\n{'small_cnn' if tiny else 'WRN-16-10'} whole bound: real {a:.2f} ms, fused {b:.2f} ms, "
          f"real / fused {ratio:.2f}")


def section_gram_screen(device, tiny, rounds, reps) -> None:
    """Frequency screening (``screen: on``) against none on the Gram bound of a random network: nothing to drop
    there, so this is the price of the screen's host syncs (``auto`` leaves it off on CUDA until it is measured)."""
    model, shape, _ = _wrn_transfer(device, tiny)
    forms = {s: create_method("gram", screen=s) for s in ("on", "off")}
    with torch.no_grad():
        on, off = (forms[s].network_svs(model, shape) for s in ("on", "off"))
        diff = max(float(((on[k] - off[k]) / off[k]).abs().max()) for k in on)
        a, b, ratio = paired(lambda: forms["on"].network_svs(model, shape),
                             lambda: forms["off"].network_svs(model, shape), device, rounds, reps)
    print("| model | screen on ms | off ms | off / on | max rel diff |\n|---|---|---|---|---|")
    print(f"| {'small_cnn' if tiny else 'WRN-16-10'} (random) | {a:.2f} | {b:.2f} | {1 / ratio:.2f} | {diff:.1e} |")


def section_gram_first(device, tiny, rounds, reps) -> None:
    """``first: kernel`` against ``first: transfer`` on whole networks (the same bound up to float32 rounding)."""
    models = [("small_cnn", (3, 16, 16))] if tiny else [(m, (3, 32, 32)) for m in ("wrn16_10", "resnet18", "vgg19")]
    print("| model | products | transfer ms | kernel ms | transfer / kernel | max rel diff |\n"
          "|---|---|---|---|---|---|")
    fused = device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
    for name, shape in models:
        model = _build(name, shape).to(device).eval()
        for products in ("auto", "triton") if fused and not tiny else ("auto",):
            forms = {f: create_method("gram", first=f, products=products) for f in ("kernel", "transfer")}
            with torch.no_grad():
                k, t = (forms[f].network_svs(model, shape) for f in ("kernel", "transfer"))
                diff = max(float(((k[x] - t[x]) / t[x]).abs().max()) for x in k)
                a, b, ratio = paired(lambda: forms["transfer"].network_svs(model, shape),
                                     lambda: forms["kernel"].network_svs(model, shape), device, rounds, reps)
            print(f"| {name} | {products} | {a:.2f} | {b:.2f} | {ratio:.2f} | {diff:.1e} |")
            sys.stdout.flush()


SECTIONS = {"tt-fold": section_tt_fold, "gram-products": section_gram_products, "gesvda": section_gesvda,
            "gram-graph": section_gram_graph, "overheads": section_overheads, "gram-networks": section_gram_networks,
            "gram-fused": section_gram_fused, "gram-screen": section_gram_screen, "gram-first": section_gram_first}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (a CPU check of the script)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"# GPU probes (scripts/gpu-probe.py)\n\ndevice: {device_name(device)}, torch {torch.__version__}, "
          f"cuda {torch.version.cuda}, tf32 matmul {torch.backends.cuda.matmul.allow_tf32}, threads "
          f"{torch.get_num_threads()}, float32, {args.rounds} rounds x {args.reps} calls per form, alternated\n")
    failed = 0
    for name in args.sections.split(","):
        print(f"## {name}\n")
        start = time.perf_counter()
        try:
            SECTIONS[name](device, args.tiny, args.rounds, args.reps)
        except Exception:  # noqa: BLE001 -- a probe that fails is reported; the next one runs
            failed += 1
            print("```\n" + traceback.format_exc() + "```")
        print(f"\n({time.perf_counter() - start:.1f} s)\n")
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
