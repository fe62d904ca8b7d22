"""asv benchmarks: SV computation per method x layer shape (time_*), and GPU peak memory (track_*).

Fixed seeded inputs; CPU runs pin one thread. ``setup`` raises NotImplementedError to skip unsupported cells
(asv's convention). asv's ``peakmem_`` measures host memory, so GPU memory is a ``track_`` in bytes.
Run: ``asv run --python=same --quick`` (CPU); on a GPU machine ``SVBENCH_ASV_DEVICE=cuda asv continuous main HEAD``.
"""

import functools
import os

import torch

from svbench.methods import create_method
from svbench.methods.base import LayerSpec

DEVICE = os.environ.get("SVBENCH_ASV_DEVICE", "cpu")
SHAPES = ["16-8-1", "64-16-1", "64-16-2", "128-16-1-g128"]  # c-n-stride[-g groups], 3x3 kernels (last: depthwise)
METHODS = ["reference", "sedghi", "sedghi-svdvals", "sedghi-eigh", "tt-half", "gram", "gram-complex", "gram-transfer",
           "power", "cayley"]


def _method(name):
    table = {
        "sedghi-eigh": ("sedghi", {"backend": "eigh"}),
        "sedghi-svdvals": ("sedghi", {"backend": "svdvals"}),
        "tt-half": ("tt", {"rank_scale": 0.5}),
        "gram-complex": ("gram", {"products": "complex"}),  # the paper code's product form, against the default
        "gram-transfer": ("gram", {"first": "transfer"}),  # first product per frequency, against auto's kernel route
    }
    base, opts = table.get(name, (name, {}))
    return create_method(base, **opts)


def _prepare(method_name, shape):
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no GPU")
    torch.set_num_threads(1)
    c, n, s, *rest = shape.split("-")
    c, n, s, groups = int(c), int(n), int(s), int(rest[0][1:]) if rest else 1
    spec = LayerSpec(c, c, 3, n, s, "circular", groups)
    method = _method(method_name)
    if method.supports.why_not(spec):
        raise NotImplementedError(method.supports.why_not(spec))
    layer = method.make_layer(spec, seed=0, device=DEVICE)
    return method, layer, n


class LayerSVs:
    params = (METHODS, SHAPES)
    param_names = ["method", "shape"]
    timeout = 300

    def setup(self, method_name, shape):
        self.method, self.layer, self.n = _prepare(method_name, shape)
        self.method.layer_svs(self.layer, self.n)  # warm-up: plans, workspaces

    def time_layer_svs(self, method_name, shape):
        self.method.layer_svs(self.layer, self.n)
        if DEVICE == "cuda":
            torch.cuda.synchronize()


# GPU memory is a CUDA benchmark: defined only there, so a CPU run (CI) does not spawn one skipped process per
# method x shape (40 of them; with the 3 large-network cells below: a CPU `asv run --quick` 381 -> 238 s, session 13).
if DEVICE == "cuda":
    class LayerSVsGPUMemory:
        params = (METHODS, SHAPES)
        param_names = ["method", "shape"]

        def setup(self, method_name, shape):
            self.method, self.layer, self.n = _prepare(method_name, shape)
            self.method.layer_svs(self.layer, self.n)

        def track_gpu_peak_bytes(self, method_name, shape):
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self.method.layer_svs(self.layer, self.n)
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - base

        track_gpu_peak_bytes.unit = "bytes"


class LayerClip:
    """One Sedghi clip-and-crop pass of one layer: svbench's unique-frequency route against the textbook one, and a
    training control step as the training loop runs it (``sedghi_clip(measure=False)``: the pass and the crop; the
    true sigma after the crop is not measured there since session 10, so this case dropped by that SV run)."""

    params = (["textbook", "sedghi", "control-step"], [sh for sh in SHAPES if "-g" not in sh])  # ungrouped layers
    param_names = ["route", "shape"]
    timeout = 300

    def setup(self, route, shape):
        from svbench.functional.clip import clip_kernel, clip_kernel_naive, sedghi_clip

        _, self.layer, self.n = _prepare("none", shape)
        self.clip = {"textbook": clip_kernel_naive, "sedghi": clip_kernel,
                     "control-step": functools.partial(sedghi_clip, measure=False)}[route]
        self.weight, self.stride = self.layer.weight.detach(), self.layer.stride[0]
        self.clip(self.weight, self.n, 1.0, self.stride)

    def time_clip(self, route, shape):
        self.clip(self.weight, self.n, 1.0, self.stride)
        if DEVICE == "cuda":
            torch.cuda.synchronize()


class NetworkSVs:
    params = (["reference", "sedghi", "tt192"], ["small_cnn", "resnet18"] if DEVICE == "cuda" else ["small_cnn"])
    param_names = ["method", "model"]
    timeout = 600

    def setup(self, method_name, model_name):
        from svbench.models import build_model

        if DEVICE == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("no GPU")
        torch.set_num_threads(1)
        torch.manual_seed(0)
        name, opts = ("tt", {"rank": 192, "init": "orthogonal"}) if method_name == "tt192" else (method_name, {})
        self.method = create_method(name, **opts)
        self.model = self.method.wrap(build_model(model_name, in_channels=3, image_size=32)).to(DEVICE).eval()
        self.method.network_svs(self.model, (3, 32, 32))

    def time_network_svs(self, method_name, model_name):
        self.method.network_svs(self.model, (3, 32, 32))
        if DEVICE == "cuda":
            torch.cuda.synchronize()


class TTFold:
    """tt's fold of WRN-16-10 at rank 192 (orthogonal cores: the R factors of 8 TT layers' outer cores and the folded
    middle cores), CholeskyQR (``auto``, the default) against the batched Householder QR it replaced."""

    params = (["auto", "qr"],)
    param_names = ["route"]
    timeout = 300

    def setup(self, route):
        from svbench.methods.tt import TTConv2d
        from svbench.models import build_model

        if DEVICE == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("no GPU")
        torch.set_num_threads(1)
        torch.manual_seed(0)
        method = create_method("tt", rank=192, init="orthogonal")
        model = method.wrap(build_model("wrn16_10", in_channels=3, image_size=32)).to(DEVICE).eval()
        self.layers = [(None if k1 is None else k1.detach(), k2.detach(), None if k3 is None else k3.detach())
                       for k1, k2, k3 in ((m.k1, m.k2, m.k3) for m in model.modules() if isinstance(m, TTConv2d))]
        self.time_fold(route)

    def time_fold(self, route):
        from svbench.functional.tt import folded_cores

        folded_cores(self.layers, route)
        if DEVICE == "cuda":
            torch.cuda.synchronize()

