"""Model names in suites: checked when the suite is read (an unknown one was found by the cell that builds it,
after the cells before it had run), and ``torchvision:NAME`` -- torchvision's classification architectures, no
weights -- in network tasks (session 14)."""

import pytest

from svbench.errors import UserError
from svbench.models import build_model
from svbench.suite.loader import parse_suite
from svbench.suite.runner import run_suite


def _suite(task):
    return {"name": "m", "tasks": [task]}


@pytest.mark.parametrize("task,says", [
    ({"name": "n", "kind": "network", "models": ["small_cnn", "resnet19"]},
     "tasks[0].models[1]: unknown model 'resnet19'. Did you mean 'resnet18'?"),
    ({"name": "n", "kind": "network", "models": ["torchvision:resnet19"]},
     "tasks[0].models[0]: unknown torchvision classification model 'resnet19'; did you mean resnet18"),
    ({"name": "t", "kind": "train", "model": "smal_cnn"}, "tasks[0].model: unknown model 'smal_cnn'"),
    ({"name": "t", "kind": "train", "model": "torchvision:resnet18"},
     "tasks[0].model: train tasks take svbench's models"),
])
def test_bad_model_names_are_said_when_the_suite_is_read(task, says):
    with pytest.raises(UserError) as e:
        parse_suite(_suite(task), "s.yaml")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_unknown_model_names_the_torchvision_form():
    with pytest.raises(UserError, match=r"torchvision's classification architectures are torchvision:NAME"):
        parse_suite(_suite({"name": "n", "kind": "network", "models": ["resnet50"]}), "s.yaml")


def test_torchvision_model_is_built_without_weights_and_checks_channels():
    model = build_model("torchvision:resnet18", num_classes=7, in_channels=3, image_size=32)
    assert model.fc.out_features == 7
    with pytest.raises(UserError, match="takes 3-channel inputs, got 1"):
        build_model("torchvision:resnet18", num_classes=10, in_channels=1)


def test_network_task_on_a_torchvision_model(tmp_path):
    """Every conv of torchvision's mobilenet_v2 (52, 17 of them depthwise) at 32 x 32: all SVs within the accuracy
    class of the float64 oracle."""
    suite = parse_suite(_suite({"name": "n", "kind": "network", "models": ["torchvision:mobilenet_v2"],
                                "methods": ["sedghi"], "measure_memory": False,
                                "timing": {"warmup": 0, "min_repeats": 1, "max_repeats": 1, "budget_s": 0.1}}),
                        "s.yaml")
    recs = run_suite(suite, out_root=tmp_path, device="cpu", threads=1, progress=False).records
    layers = [r for r in recs if r["metric"] == "network_sv_time_ms"]
    assert layers and layers[0]["status"] == "ok" and layers[0]["extra"]["n_layers"] == 52
    err = [r for r in recs if r["metric"] == "network_max_err_rel"]
    assert err and err[0]["value"] <= 2e-6
