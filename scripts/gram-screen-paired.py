"""Paired timing of the Gram bound with frequency screening on and off (``screen``, functional/gram.py).

Screening drops a frequency once its bound can no longer be the layer's largest; the value is unchanged (checked
here: the largest relative difference per model is printed). Its saving depends on how sigma_1 varies across the
frequencies of a layer: large for trained layers, small for random ones. So the models are trained on the
embedded MNIST digits (``none`` method, Adam): the small CNN for EPOCHS epochs and ResNet-18 for one (its bound is
taken on a 32 x 32 grid: its 28 x 28 input halves to 7 x 7, which circular padding at stride 2 cannot take), and,
for the overhead, both at random initialisation. Per model: the bound of every conv (``network_svs``, no
gradient; ROUNDS x REPS, ResNet-18 3 x 1) and for the small CNN the training penalty (``penalty_weight``, forward +
backward), the two settings in turn (median over rounds, median of the per-round ratios). Training uses up to two
threads, the timings one. Run: ``OMP_NUM_THREADS=1 python scripts/gram-screen-paired.py``.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from svbench.data.sources import load_dataset
from svbench.measure.timing import alternated_ms, paired_cpu_script
from svbench.methods import create_method
from svbench.models import build_model
from svbench.train.config import OptimSpec, ScheduleSpec
from svbench.train.loop import train


def trained(name: str, epochs: int, max_batches: int | None = None, threads: int = 2) -> nn.Module:
    """``name`` trained on the embedded MNIST digits (on up to ``threads`` threads; the timings use one)."""
    data = load_dataset("mnist_embedded")
    model = build_model(name, in_channels=1, image_size=28)
    torch.set_num_threads(min(threads, len(os.sched_getaffinity(0))))
    try:
        res = train(model, create_method("none"), data, epochs=epochs, batch_size=64, optim=OptimSpec("adam", 1e-3),
                    schedule=ScheduleSpec("cosine"), seed=0, device=torch.device("cpu"), max_batches=max_batches)
    finally:
        torch.set_num_threads(1)
    return res.model.eval()


def compare(label: str, model: nn.Module, shape: tuple[int, int, int], rounds: int, reps: int,
            penalty_too: bool = True) -> None:
    on, off = (create_method("gram", screen=s) for s in ("on", "off"))
    with torch.no_grad():
        a, b = on.network_svs(model, shape), off.network_svs(model, shape)
        diff = max(float(abs(a[k] - b[k]).max() / b[k].max()) for k in a)
        t_on, t_off, ratio = alternated_ms(lambda: on.network_svs(model, shape), lambda: off.network_svs(model, shape),
                                           rounds, reps)
    if not penalty_too:
        print(f"| {label} | {t_off:.2f} | {t_on:.2f} | {1 / ratio:.2f} | – | – | – | {diff:.1e} |", flush=True)
        return
    pen = {s: create_method("gram", screen=s, penalty_weight=1.0) for s in ("on", "off")}
    for m in pen.values():
        m.wrap(model)
    model(torch.zeros(1, *shape))  # the penalty reads each conv's input size from the forward hooks

    def penalty(m):
        def call():
            model.zero_grad()
            m.penalty(model).backward()
        return call

    p_on, p_off, p_ratio = alternated_ms(penalty(pen["on"]), penalty(pen["off"]), rounds, reps)
    print(f"| {label} | {t_off:.2f} | {t_on:.2f} | {1 / ratio:.2f} | {p_off:.2f} | {p_on:.2f} | {1 / p_ratio:.2f} | "
          f"{diff:.1e} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = paired_cpu_script(argv, __doc__.splitlines()[0], "T = 6, float32", rounds=9,
                             quick_help="a few training batches, one round (a check)", ints={"epochs": 4})
    rounds, reps = args.rounds, args.reps
    print("| model | bound off ms | bound on ms | off / on | penalty off ms | penalty on ms | off / on | "
          "max rel. diff |\n|---|---|---|---|---|---|---|---|")
    epochs = 1 if args.quick else args.epochs
    compare(f"small CNN, MNIST, {epochs} epoch(s)", trained("small_cnn", epochs, 3 if args.quick else None,
                                                                     1 if args.quick else 2),
            (1, 28, 28), rounds, reps)
    compare("small CNN, random init", build_model("small_cnn", in_channels=1, image_size=28).eval(), (1, 28, 28),
            rounds, reps)
    if not args.quick:
        compare("ResNet-18, MNIST, 1 epoch (bound on 32 x 32)", trained("resnet18", 1), (1, 32, 32), 3, 1,
                penalty_too=False)
        compare("ResNet-18, random init (32 x 32)", build_model("resnet18", in_channels=1, image_size=28).eval(),
                (1, 32, 32), 3, 1, penalty_too=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
