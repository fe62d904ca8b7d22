"""Paired CPU timing of the frequency-free route (issue 6): kernels no larger than their stride (ResNet-18's 1 x 1
stride-2 shortcuts) decomposed and clipped through their ONE transfer matrix, against the per-frequency route they
took before, alternated on the same model: ROUNDS rounds, each the median of REPS calls of either form, in turn;
the table holds each form's median over rounds and the median of the per-round ratios. All SVs of every conv
(``sedghi.network_svs``) and the clipping pass (``sedghi.network_clip``), float32, one thread, plus the largest
difference of the two forms' results. Run: ``OMP_NUM_THREADS=1 python scripts/frequency-free-paired.py``.
"""

from __future__ import annotations

from unittest import mock

import torch

import svbench.functional.batching as batching
from svbench.measure.env import device_name
from svbench.measure.timing import alternated_ms
from svbench.methods import create_method
from svbench.models import build_model

ROUNDS, REPS = 7, 1


def main(model_name: str = "resnet18", image: int = 32, rounds: int = ROUNDS, reps: int = REPS) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(model_name, in_channels=3, image_size=image).eval()
    shape = (3, image, image)
    method = create_method("sedghi")
    def old(fn):  # the per-frequency route: no layer is frequency-free
        def run():
            with mock.patch.object(batching, "frequency_free_columns", lambda *a: None):
                return fn()
        return run

    print(f"device: cpu ({device_name('cpu')}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{model_name} at {image}x{image}, {rounds} rounds x {reps} calls, float32\n")
    print("| what | per-frequency ms | frequency-free ms | per-frequency / frequency-free | max abs difference |")
    print("|---|---|---|---|---|")
    for what, fn in (("all SVs", lambda: method.network_svs(model, shape)),
                     ("clipping pass", lambda: method.network_clip(model, shape, 1.0))):
        a, b = old(fn)(), fn()  # warm-up, and the two results
        diff = max(float((a[k] - b[k]).abs().max()) for k in a)
        before, after, ratio = alternated_ms(old(fn), fn, rounds, reps)
        print(f"| {what} | {before:.4g} | {after:.4g} | {ratio:.3f} | {diff:.2g} |")


if __name__ == "__main__":
    main()
