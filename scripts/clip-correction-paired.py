"""Paired CPU timing of the clipping correction built from the directions above the target only (issue 6):
``clip_correction`` forms C = A - clip(A) from the k singular directions whose SV exceeds tau (p q k flops), against
the form before session 8 that rebuilt clip(A) from every direction and subtracted it (p q^2 flops, plus two full
passes). Alternated on the same model: ROUNDS rounds, each the median of REPS calls of either form, in turn; the
table holds each form's median over rounds, the median of the per-round ratios and the largest difference of the two
results. ResNet-18 at 32 x 32, float32, one thread: the first clipping pass (weights at init) and a second pass on the
kernels the first returned (the state a model is in when clipping runs every N training steps), for the Gram-eig
route (the CPU default) and the SVD route (the CUDA default, run here on LAPACK).
A second table times a training control step as ``sedghi.after_step`` runs it (``sedghi_clip`` layer by layer:
sigma_max before, the pass, the true sigma_max after the crop) with sigma_max before read off the pass's own
decomposition (``clip_kernels(sigma_before=...)``) against a separate exact SV computation, as before session 8.
Run: ``OMP_NUM_THREADS=1 python scripts/clip-correction-paired.py``.
"""

from __future__ import annotations

from unittest import mock

import torch

import svbench.functional.clip as clip
from svbench.measure.env import device_name
from svbench.measure.timing import alternated_ms
from svbench.methods.base import conv_inputs
from svbench.models import build_model

ROUNDS, REPS = 7, 1


def full_correction(spec, target, mode="clip", *, route="svd", driver=None, with_sigma=False):
    """The pre-session-8 form: A - clip(A) with clip(A) rebuilt from every singular direction."""
    if route == "svd" or mode == "assign":
        u, s, vh = clip._svd(spec, driver if spec.is_cuda else None)
        s_new = torch.full_like(s, target) if mode == "assign" else s.clamp(max=target)
        c, top = spec - (u * s_new.unsqueeze(-2).to(u.dtype)) @ vh, s[..., 0]
    else:
        p, q = spec.shape[-2:]
        ev, v = torch.linalg.eigh(spec.mH @ spec if q <= p else spec @ spec.mH)
        sigma = ev.clamp_min(1e-30).sqrt()
        shrink = (1 - target / sigma).clamp_min(0).to(spec.dtype)
        if q <= p:
            c = spec - (spec - ((spec @ v) * shrink.unsqueeze(-2)) @ v.mH)
        else:
            c = spec - (spec - (v * shrink.unsqueeze(-2)) @ (v.mH @ spec))
        top = sigma[..., -1]
    return (c, top) if with_sigma else c


def main(model_name: str = "resnet18", image: int = 32, rounds: int = ROUNDS, reps: int = REPS,
         target: float = 1.0) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=3, image_size=image).eval()
    layers = [(m.weight.detach(), n, m.stride[0], m.groups, m.dilation[0])
              for _, m, n in conv_inputs(model, (3, image, image))]
    second = [(w, *rest) for w, (_, *rest) in zip(clip.clip_kernels(layers, target), layers)]

    def old(fn):
        def run():
            with mock.patch.object(clip, "clip_correction", full_correction):
                return fn()
        return run

    print(f"device: cpu ({device_name('cpu')}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{model_name} at {image}x{image}, target {target}, {rounds} rounds x {reps} calls, float32\n")
    print("| pass | route | all directions ms | directions above target ms | ratio | max abs difference |")
    print("|---|---|---|---|---|---|")
    for what, ls in (("first (init)", layers), ("second", second)):
        for route in ("gram", "svd"):
            def fn(ls=ls, route=route):
                return clip.clip_kernels(ls, target, route=route)
            a, b = old(fn)(), fn()  # warm-up, and the two results
            diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
            before, after, ratio = alternated_ms(old(fn), fn, rounds, reps)
            print(f"| {what} | {route} | {before:.4g} | {after:.4g} | {ratio:.3f} | {diff:.2g} |", flush=True)
    control_step(layers, target, rounds, reps)


def control_step(layers: list, target: float, rounds: int, reps: int) -> None:
    """One control step (sedghi_clip per layer, CPU default route): sigma_max before from the pass vs computed."""
    real = clip.clip_kernels

    def step():
        return [clip.sedghi_clip(w, n, target, s, groups=g, dilation=d) for w, n, s, g, d in layers]

    def separate():  # the pre-session-8 form: sigma_max before by its own exact SV computation
        with mock.patch.object(clip, "clip_kernels", lambda *a, sigma_before=None, **k: real(*a, **k)):
            return step()

    a, b = separate(), step()
    diff = max(abs(x.sigma_max_before - y.sigma_max_before) / y.sigma_max_before for x, y in zip(a, b))
    before, after, ratio = alternated_ms(separate, step, rounds, reps)
    print("\n| control step | layers | sigma_max before computed ms | read off the pass ms | ratio | "
          "max rel. difference of sigma_max before |")
    print("|---|---|---|---|---|---|")
    print(f"| sedghi_clip per layer | {len(layers)} | {before:.4g} | {after:.4g} | {ratio:.3f} | {diff:.2g} |",
          flush=True)


if __name__ == "__main__":
    main()
