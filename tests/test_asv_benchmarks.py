"""Every asv benchmark's setup and body run (smallest parameters), so a broken benchmark fails here, not in asv."""

import itertools
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "suites" / "asv"))
import bench_spectrum  # noqa: E402

SMALL = {"shape": "16-8-1", "model": "small_cnn"}
CLASSES = [getattr(bench_spectrum, n) for n in dir(bench_spectrum)
           if isinstance(getattr(bench_spectrum, n), type) and hasattr(getattr(bench_spectrum, n), "params")]


def _cases():
    for cls in CLASSES:
        grids = [[SMALL[name]] if name in SMALL else values for name, values in zip(cls.param_names, cls.params)]
        for combo in itertools.product(*grids):
            yield pytest.param(cls, combo, id=f"{cls.__name__}-{'-'.join(combo)}")


@pytest.mark.parametrize("cls,combo", list(_cases()))
def test_benchmark_runs(cls, combo):
    bench = cls()
    try:
        bench.setup(*combo)
    except NotImplementedError as e:  # asv's skip convention (e.g. GPU-only benchmarks on CPU)
        pytest.skip(str(e))
    bodies = [getattr(bench, n) for n in dir(bench) if n.startswith(("time_", "track_", "peakmem_"))]
    assert bodies
    for body in bodies:
        body(*combo)


@pytest.mark.parametrize("method", ["sedghi", "gram", "power"])
def test_depthwise_shape_runs(method):
    """The depthwise asv shape builds a grouped layer (groups parsed from '-g128'), and its body runs."""
    bench = bench_spectrum.LayerSVs()
    bench.setup(method, "128-16-1-g128")
    assert bench.layer.groups == 128 and bench.n == 16
    bench.time_layer_svs(method, "128-16-1-g128")
    with pytest.raises(NotImplementedError):  # TT declines grouped convs: asv's skip
        bench.setup("tt-half", "128-16-1-g128")


def test_gpu_benchmarks_defined_only_for_cuda(monkeypatch):
    """A CPU run defines no GPU-memory benchmark and no large-network cells (each would cost asv a skipped process);
    with SVBENCH_ASV_DEVICE=cuda they exist, and on a machine without a GPU their setup skips (asv's convention)."""
    import importlib

    assert not hasattr(bench_spectrum, "LayerSVsGPUMemory")
    assert bench_spectrum.NetworkSVs.params[1] == ["small_cnn"]
    monkeypatch.setenv("SVBENCH_ASV_DEVICE", "cuda")
    cuda_module = importlib.reload(bench_spectrum)
    try:
        assert cuda_module.NetworkSVs.params[1] == ["small_cnn", "resnet18"]
        bench = cuda_module.LayerSVsGPUMemory()
        assert bench.track_gpu_peak_bytes.unit == "bytes"
        if not torch.cuda.is_available():
            with pytest.raises(NotImplementedError, match="no GPU"):
                bench.setup("sedghi", "16-8-1")
    finally:
        monkeypatch.delenv("SVBENCH_ASV_DEVICE")
        importlib.reload(bench_spectrum)
