"""Paired CPU timing of the clipping correction built from the directions above the target only (issue 6):
``clip_correction`` forms C = A - clip(A) from the k singular directions whose SV exceeds tau (p q k flops), against
the form before session 8 that rebuilt clip(A) from every direction and subtracted it (p q^2 flops, plus two full
passes). Alternated on the same model: ROUNDS rounds, each the median of REPS calls of either form, in turn; the
table holds each form's median over rounds, the median of the per-round ratios and the largest difference of the two
results. ResNet-18 at 32 x 32, float32, one thread: the first clipping pass (weights at init) and a second pass on the
kernels the first returned (the state a model is in when clipping runs every N training steps), for the Gram-eig
route (the CPU default) and the SVD route (the CUDA default, run here on LAPACK).
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


def full_correction(spec, target, mode="clip", *, route="svd", driver=None):
    """The pre-session-8 form: A - clip(A) with clip(A) rebuilt from every singular direction."""
    if route == "svd" or mode == "assign":
        u, s, vh = clip._svd(spec, driver if spec.is_cuda else None)
        s_new = torch.full_like(s, target) if mode == "assign" else s.clamp(max=target)
        return spec - (u * s_new.unsqueeze(-2).to(u.dtype)) @ vh
    p, q = spec.shape[-2:]
    if q <= p:
        ev, v = torch.linalg.eigh(spec.mH @ spec)
        shrink = (1 - target / ev.clamp_min(1e-30).sqrt()).clamp_min(0).to(spec.dtype)
        return spec - (spec - ((spec @ v) * shrink.unsqueeze(-2)) @ v.mH)
    ev, u = torch.linalg.eigh(spec @ spec.mH)
    shrink = (1 - target / ev.clamp_min(1e-30).sqrt()).clamp_min(0).to(spec.dtype)
    return spec - (spec - (u * shrink.unsqueeze(-2)) @ (u.mH @ spec))


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


if __name__ == "__main__":
    main()
