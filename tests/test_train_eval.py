"""Training and evaluation: ECE, AutoAttack contract, certified accuracy, short training per method, loaders."""

import gzip
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from svbench.data import load_dataset
from svbench.errors import UserError
from svbench.methods import METHODS, create_method
from svbench.metrics.calibration import calibration_metrics, ece_reference, ece_torchmetrics
from svbench.metrics.certified import certified_accuracy, lipschitz_bound
from svbench.metrics.robust import AttackSpec, autoattack_accuracy
from svbench.models import build_model
from svbench.models.normalize import Normalize
from svbench.train import OptimSpec, ScheduleSpec, predict, train


def test_ece_hand_computed_with_ties_and_confidence_one():
    # confidences 1.0 (right), 0.6 (right), 0.6 (wrong), 0.8 (wrong); 0.6 = 9/15 sits on a bin edge
    probs = torch.tensor([[1.0, 0.0], [0.6, 0.4], [0.6, 0.4], [0.2, 0.8]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 0])
    expected = 0.5 * 0.1 + 0.25 * 0.8  # bin {0.6, 0.6}: |0.5 - 0.6| * 2/4; bin {0.8}: |0 - 0.8| / 4
    assert ece_reference(probs, labels) == pytest.approx(expected, abs=1e-12)
    assert ece_torchmetrics(probs, labels) == pytest.approx(expected, abs=1e-6)


def test_ece_matches_torchmetrics_on_fixed_logits():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(2000, 10, generator=g)
    labels = torch.randint(0, 10, (2000,), generator=g)
    m = calibration_metrics(logits, labels)
    assert m["ece"] == pytest.approx(m["ece_reference"], abs=1e-6)
    # small logits (a Lipschitz net): torchmetrics would NOT softmax them itself; we always pass probabilities
    small = 0.01 * torch.rand(500, 10, generator=g)
    m2 = calibration_metrics(small, labels[:500])
    assert m2["ece"] == pytest.approx(m2["ece_reference"], abs=1e-6)
    assert 0 <= m["brier"] <= 2 and m["nll"] > 0


def _tiny_model():
    data = load_dataset("synthetic")
    model = build_model("small_cnn", num_classes=4, in_channels=1, image_size=16, width=4,
                        mean=data.mean, std=data.std)
    return model, data


def test_autoattack_stays_within_eps_in_pixel_space():
    model, data = _tiny_model()
    train(model, create_method("none"), data, epochs=1, batch_size=32, optim=OptimSpec(name="adam", lr=3e-3,
          weight_decay=0), schedule=ScheduleSpec(name="none"), seed=0, device=torch.device("cpu"))
    spec = AttackSpec(norm="Linf", eps=0.05, n_examples=24, version="custom", attacks=["apgd-ce"], n_iter=5,
                      batch_size=24)
    x, y = data.test.images(slice(0, 24)), data.test.y[:24]
    res = autoattack_accuracy(model, x, y, spec)
    assert res["max_perturbation"] <= 0.05 + 1e-6
    assert res["n_examples"] == 24 and 0 <= res["robust_accuracy"] <= res["clean_accuracy_subset"]
    spec2 = AttackSpec(norm="L2", eps=0.5, n_examples=8, version="custom", attacks=["apgd-ce"], n_iter=3,
                       batch_size=8)
    assert autoattack_accuracy(model, x, y, spec2)["max_perturbation"] <= 0.5 * (1 + 1e-4) + 1e-6


def test_attack_contract_rejects_normalised_inputs_and_models_without_normalize():
    model, data = _tiny_model()
    spec = AttackSpec(n_examples=4, version="custom", attacks=["apgd-ce"], n_iter=1)
    x, y = data.test.images(slice(0, 4)), data.test.y[:4]
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        autoattack_accuracy(model, x * 2 - 1, y, spec)
    bare = nn.Sequential(nn.Flatten(), nn.Linear(256, 4))
    with pytest.raises(UserError, match="no Normalize"):
        autoattack_accuracy(bare, x, y, spec)


class _Chain(nn.Sequential):
    is_chain = True


def test_certified_accuracy_matches_hand_computation():
    w = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    model = _Chain(Normalize([0.0], [0.5]), nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[2].weight.copy_(w)
    lip, layers = lipschitz_bound(model, (1, 1, 2))
    assert lip == pytest.approx(2.0 * 3.0)  # 1/std * ||W||_2, measured, not assumed
    assert [row["type"] for row in layers] == ["Normalize", "Flatten", "Linear"]
    logits = torch.tensor([[4.0, 1.0], [1.0, 1.5], [0.0, 2.0]])
    labels = torch.tensor([0, 1, 0])
    # margins: 3 (correct), 0.5 (correct), wrong; radius = margin / (sqrt(2) * 6)
    eps = 0.1
    r = [3 / (math.sqrt(2) * 6), 0.5 / (math.sqrt(2) * 6)]
    expected = sum(ri > eps for ri in r) / 3
    assert certified_accuracy(logits, labels, lip, eps) == pytest.approx(expected)


CONTROL = {
    "none": {},
    "sedghi": {"clip_to": 1.0, "clip_every": 3},
    "tt": {"rank_scale": 0.5, "control": "clip", "target": 1.0, "every": 3, "penalty_lambda": 1.0},
    "gram": {"target": 1.0, "every": 3, "penalty_weight": 0.01},
    "power": {"conv_target": 1.0},
    "cayley": {},
}


@pytest.mark.parametrize("name", METHODS.names())
def test_short_training_per_method_beats_chance(name):
    model, data = _tiny_model()
    method = METHODS.get(name).from_options(CONTROL.get(name, {}))
    res = train(model, method, data, epochs=3, batch_size=32, optim=OptimSpec(name="adam", lr=5e-3, weight_decay=0),
                schedule=ScheduleSpec(name="none"), seed=0, device=torch.device("cpu"))
    acc = float((predict(res.model, data.test, 256, torch.device("cpu")).argmax(1) == data.test.y).float().mean())
    assert acc > 0.5, f"{name}: {acc}"  # chance is 0.25
    assert res.nonfinite_steps == 0
    if method.control_target() is not None and name != "cayley":
        assert res.control_steps > 0 and res.last_control


def test_fabricated_cifar10_and_cifar100_on_disk(tmp_path):
    rng = np.random.default_rng(0)
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / f, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, 10))}, fh)
    d = load_dataset("cifar10", str(tmp_path))
    assert len(d.train) + len(d.val) == 50 and len(d.test) == 10 and d.train.x.shape[1:] == (3, 32, 32)
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    for f in ("train", "test"):
        with open(base / f, "wb") as fh:
            pickle.dump({b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                         b"fine_labels": list(rng.integers(0, 100, 20))}, fh)
    d = load_dataset("cifar100", str(tmp_path))
    assert d.num_classes == 100 and len(d.test) == 20


def test_cifar_batch_that_would_run_code_is_refused(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(base / f, "wb") as fh:
            pickle.dump({b"data": Evil(), b"labels": []}, fh)
    with pytest.raises(UserError, match="refusing"):
        load_dataset("cifar10", str(tmp_path))


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fabricated_fashion_mnist_on_disk(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    _idx(raw / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (30, 28, 28)))
    _idx(raw / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 30))
    _idx(raw / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (7, 28, 28)))
    _idx(raw / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 7))
    d = load_dataset("fashion_mnist", str(tmp_path))
    assert len(d.test) == 7 and d.train.x.shape[1:] == (1, 28, 28)


def test_missing_dataset_messages(tmp_path):
    with pytest.raises(UserError, match="cifar-10-batches-py.*download"):
        load_dataset("cifar10", str(tmp_path))
    with pytest.raises(UserError, match="--data-root"):
        load_dataset("cifar100", None)
    from svbench.data.sources import DEBIAN_FASHION

    if not DEBIAN_FASHION.exists():  # with the Debian package installed, it is found there instead
        with pytest.raises(UserError, match=r"looked in .*FashionMNIST/raw"):
            load_dataset("fashion_mnist", str(tmp_path))
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("imagenet")


def test_embedded_mnist_split_is_deterministic():
    a, b = load_dataset("mnist_embedded"), load_dataset("mnist_embedded")
    assert torch.equal(a.test.y, b.test.y) and len(a.train) == 3500 and len(a.val) == 500 and len(a.test) == 1000


def test_foolbox_pgd_cross_check_runs_in_pixel_space():
    from svbench.metrics.robust import foolbox_pgd_accuracy

    model, data = _tiny_model()
    x, y = data.test.images(slice(0, 16)), data.test.y[:16]
    res = foolbox_pgd_accuracy(model, x, y, AttackSpec(eps=0.05, n_examples=16))
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    assert res["n_examples"] == 16 and 0.0 <= res["robust_accuracy_pgd"] <= clean
