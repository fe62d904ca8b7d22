"""A researcher's own architecture by where it is defined: ``--model FILE.py:NAME`` / ``MODULE:NAME`` (spectrum),
``models: [FILE.py:NAME(...)]`` (network tasks), ``model:`` (train tasks).

Before: ``--model`` took svbench's registered names and ``torchvision:NAME`` only, so a checkpoint of any other
architecture got no real per-layer geometry (stride 1 and one input size assumed for every conv) and no certified
bound. Checked here: parsing (literals only, never evaluated), importing a file (its sibling imports work) or a
module from the current folder, classes / factories / instances, which keyword arguments are passed, one line for
every failure, and the results: the SVs of a conv the spec's model runs at stride 2 on 8 x 8 against the dense
float64 operator, a suite network task and a train task on such a model.
"""

import json
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from svbench.cli.main import main
from svbench.errors import UserError
from svbench.models import build_model, check_model_name
from svbench.models.imported import build_imported, is_imported, parse_spec

NET = textwrap.dedent("""
    import torch
    from torch import nn
    from blocks import block  # a sibling module, imported as a script would

    BUILT = []

    class Net(nn.Module):
        def __init__(self, width=4, num_classes=10, in_channels=3):
            super().__init__()
            BUILT.append((width, num_classes, in_channels))
            self.f = nn.Sequential(block(in_channels, width, 1), block(width, 2 * width, 2),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(2 * width, num_classes)

        def forward(self, x):
            return self.head(self.f(x))

    def make(width=4):
        return Net(width, num_classes=7)

    def not_a_model():
        return [1, 2]

    def broken(width=4):
        raise ValueError("width must be even")

    instance = Net(2)
    CONSTANT = 3
""")
BLOCKS = textwrap.dedent("""
    from torch import nn

    def block(ci, co, s):
        return nn.Sequential(nn.Conv2d(ci, co, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(co), nn.ReLU())
""")


@pytest.fixture
def netfile(tmp_path, monkeypatch):
    """nets/net.py (importing its sibling nets/blocks.py); sys.path and the modules it adds are put back."""
    folder = tmp_path / "nets"
    folder.mkdir()
    (folder / "net.py").write_text(NET)
    (folder / "blocks.py").write_text(BLOCKS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield folder / "net.py"
    for name, module in list(sys.modules.items()):  # only the test's own (torch's lazily imported ones stay)
        if str(getattr(module, "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.mark.parametrize("text, target, attr, args, kwargs", [
    ("nets/net.py:Net", "nets/net.py", "Net", (), {}),
    ("nets/net.py:Net()", "nets/net.py", "Net", (), {}),
    ("my_pkg.models:WideResNet(16, widen_factor=4, strides=(1, 2), cfg={'a': [1, None]}, bn=True)",
     "my_pkg.models", "WideResNet", (16,), {"widen_factor": 4, "strides": (1, 2), "cfg": {"a": [1, None]}, "bn": True}),
    ("pkg.mod:Outer.build(name='x:y(z)')", "pkg.mod", "Outer.build", (), {"name": "x:y(z)"}),
    ("C_models/a.py : Net ( width = -2.5 )", "C_models/a.py", "Net", (), {"width": -2.5}),
])
def test_parse_spec(text, target, attr, args, kwargs):
    spec = parse_spec(text)
    assert (spec.target, spec.attr, spec.args, dict(spec.kwargs)) == (target, attr, args, kwargs)
    assert is_imported(text)


@pytest.mark.parametrize("name", ["resnet18", "torchvision:resnet18", "small_cnn"])
def test_registered_and_torchvision_names_are_not_import_specs(name):
    assert not is_imported(name)


@pytest.mark.parametrize("text, needle", [
    (":Net", "expected FILE.py:NAME or MODULE:NAME"),
    ("nets/net.py:", "expected FILE.py:NAME"),
    ("nets/net.py:1Net", "expected FILE.py:NAME"),
    ("nets/net.py:Net(width=4", "its arguments do not parse"),
    ("nets/net.py:Net(width=os.getcwd())", "must be Python literals"),
    ("nets/net.py:Net(width=__import__('os').system('touch HACKED'))", "must be Python literals"),
    ("nets/net.py:Net(*a)", "*args / **kwargs are not taken"),
    ("nets/net.py:Net(**kw)", "*args / **kwargs are not taken"),
    ("nets/net.py:Net(width=2)(3)", "one call with its arguments expected"),
    ("nets/net.py:Net(width=2).f", "one call with its arguments expected"),
])
def test_malformed_specs_are_one_line_and_run_nothing(text, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=None) as e:
        parse_spec(text)
    assert needle in str(e.value) and text in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "HACKED").exists()


def test_a_class_gets_the_spec_arguments_and_only_the_svbench_keywords_it_names(netfile):
    model = build_model(f"{netfile}:Net(width=6)", num_classes=5, in_channels=1, image_size=16, mean=(0.5,),
                        std=(0.2,))
    module = sys.modules[type(model).__module__]
    assert module.BUILT[-1] == (6, 5, 1)  # num_classes, in_channels offered and taken; image_size, mean, std not
    assert model.head.out_features == 5 and model.f[0][0].in_channels == 1
    model = build_model(f"{netfile}:Net(width=6, num_classes=3)", num_classes=5)  # the spec wins
    assert model.head.out_features == 3
    model = build_model(f"{netfile}:Net(8)", num_classes=5)  # a positional argument
    assert module.BUILT[-1] == (8, 5, 3)
    model = build_model(f"{netfile}:make", num_classes=5)  # a factory that names no num_classes: not passed
    assert model.head.out_features == 7
    model = build_model(f"{netfile}:Net", num_classes=5, width=10)  # a train task's model_args: passed
    assert module.BUILT[-1] == (10, 5, 3)
    with pytest.raises(UserError, match="width is set both in the spec and in model_args"):
        build_model(f"{netfile}:Net(width=4)", width=10)


def test_an_instance_is_copied_and_takes_no_arguments(netfile):
    first = build_imported(f"{netfile}:instance", num_classes=5)
    second = build_imported(f"{netfile}:instance")
    module = sys.modules[type(first).__module__]
    assert first is not module.instance and second is not first
    with torch.no_grad():
        first.head.weight.fill_(3.0)
    assert not torch.equal(module.instance.head.weight, first.head.weight)  # the module's own is left alone
    with pytest.raises(UserError, match="nn.Module instance, not a class or factory; drop the arguments"):
        build_imported(f"{netfile}:instance(3)")
    with pytest.raises(UserError, match=r"takes no model_args \(width\)"):
        build_imported(f"{netfile}:instance", width=3)


def test_the_file_runs_once_per_process(netfile):
    build_model(f"{netfile}:Net")
    build_model(f"{netfile}:Net(width=2)")
    a, b = build_model(f"{netfile}:Net"), build_model(f"{netfile}:make")
    assert type(a) is type(b)  # one module: the same class
    assert len(sys.modules[type(a).__module__].BUILT) == 5  # instance + the four builds


@pytest.mark.parametrize("suffix, needle", [
    (":Nett", "has no 'Nett'; its nn.Module classes: Net, instance"),
    (":CONSTANT", "is a int, not an nn.Module, a class or a factory"),
    (":not_a_model", "not_a_model() returned a list, not an nn.Module"),
    (":broken(width=3)", "broken(width=3) raised ValueError: width must be even (--debug for the traceback)"),
    (":Net(depth=3)", "Net(depth=3) raised TypeError"),
])
def test_what_the_file_holds_is_checked_in_one_line(netfile, suffix, needle):
    with pytest.raises(UserError) as e:
        check_model_name(f"{netfile}{suffix}")
        build_model(f"{netfile}{suffix}")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_files_and_modules_that_are_not_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    (tmp_path / "folder.py").mkdir()
    (tmp_path / "bad.py").write_text("import torch\nraise RuntimeError('no GPU here')\n")
    (tmp_path / "syntax.py").write_text("def f(:\n")
    for name, needle in [("nope.py:Net", "nope.py is not found; pass the .py file that defines Net"),
                         ("folder.py:Net", "folder.py is a folder"),
                         ("bad.py:Net", "importing bad.py failed: RuntimeError: no GPU here (--debug"),
                         ("syntax.py:Net", "importing syntax.py failed: SyntaxError"),
                         ("no_such_pkg.models:Net", "no module 'no_such_pkg' (from the current folder or the "
                                                    "installed packages); for a file write path/to/file.py:Net")]:
        with pytest.raises(UserError) as e:
            check_model_name(name)
        assert needle in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    assert not any(m.startswith("svbench_user_model_bad") for m in sys.modules)  # a failed import is not kept


def test_a_module_of_the_current_folder(netfile, monkeypatch):
    """``MODULE:NAME`` is looked up from the current folder too (the ``svbench`` console script does not put it on
    sys.path, ``python -m`` does)."""
    root = netfile.parent.parent
    (root / "zoo_pkg").mkdir()
    (root / "zoo_pkg" / "__init__.py").write_text("")
    (root / "zoo_pkg" / "models.py").write_text("from torch import nn\n\n"
                                                "def tiny(c=2):\n    return nn.Sequential(nn.Conv2d(3, c, 3))\n")
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(root))])
    model = build_model("zoo_pkg.models:tiny(c=5)")
    assert model[0].out_channels == 5


def test_spectrum_reads_the_geometry_from_the_model_the_spec_names(netfile, tmp_path, capsys, monkeypatch):
    """The stride-2 conv ``f.1.0`` runs on 16 x 16 (after the stride-1 block): its SVs are those of the stride-2
    circular conv on 16 x 16 (dense float64 operator), the table says 'model hooks', the bound is written."""
    from svbench.functional.oracle import oracle_singular_values

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    spec = "nets/net.py:Net(width=4, num_classes=3)"
    model = build_model(spec)
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    code = main(["spectrum", "ckpt.pt", "--model", spec, "--input-shape", "3,16,16", "--no-progress", "--out",
                 str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "certified Lipschitz bound of the model: L = " in out
    rows = [r.split(",") for r in (tmp_path / "out" / "spectrum.csv").read_text().splitlines()[1:]]
    got = torch.tensor([float(r[5]) for r in rows if r[0] == "f.1.0"], dtype=torch.float64)
    assert {(r[2], r[3]) for r in rows if r[0] == "f.1.0"} == {("16", "2")}
    w = model.f[1][0].weight.detach().double()
    circ = lambda x: F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), w, stride=2)  # noqa: E731
    exact = oracle_singular_values(circ, (4, 16, 16))
    assert got.shape == exact.shape and float((got - exact).abs().max()) <= 2e-6 * float(exact[0])
    assert "| f.1.0 | conv | (8, 4, 3, 3) | 16 | 2 (model hooks) |" in (tmp_path / "out" / "spectrum.md").read_text()
    # the checkpoint of another width: one line that says what does not fit and how to build it
    code = main(["spectrum", "ckpt.pt", "--model", "nets/net.py:Net(width=6, num_classes=3)", "--input-shape",
                 "3,16,16", "--no-progress", "--out", str(tmp_path / "out2")])
    err = capsys.readouterr().err
    assert code == 2 and "size mismatch for f.0.0.weight" in err and "(and " in err
    assert "build it with the arguments it was trained with" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out2").exists()


def test_suite_network_and_train_tasks_take_the_spec(netfile, tmp_path, monkeypatch):
    from svbench.suite.runner import run_suite

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: mine
        device: cpu
        threads: 1
        seeds: [0]
        tasks:
          - name: network
            kind: network
            models: ["nets/net.py:Net(width=4)"]
            input_shape: [3, 16, 16]
            methods: [sedghi]
            timing: {warmup: 0, min_repeats: 1, max_repeats: 1, budget_s: 0.01}
            check_error: true
          - name: train
            kind: train
            dataset: synthetic
            model: nets/net.py:Net
            model_args: {width: 2}
            methods: [none]
            epochs: 1
            batch_size: 32
            optimizer: {name: adam, lr: 0.005, weight_decay: 0.0}
            schedule: {name: none}
    """))
    run = run_suite(str(tmp_path / "s.yaml"), out_root=tmp_path / "runs", progress=False)
    records = [json.loads(line) for line in (run.run_dir / "results.jsonl").read_text().splitlines()]
    assert records and all(r["status"] == "ok" for r in records), [(r["metric"], r["status"]) for r in records]
    err = [r for r in records if r["metric"] == "network_max_err_rel"]
    assert err and err[0]["value"] <= 2e-6 and err[0]["model"] == "nets/net.py:Net(width=4)"
    assert any(r["metric"] == "test_accuracy" for r in records)
    # an unknown name in the file is found at validation, before anything runs
    (tmp_path / "bad.yaml").write_text((tmp_path / "s.yaml").read_text().replace("Net(width=4)", "Nett"))
    code = main(["validate", str(tmp_path / "bad.yaml")])
    assert code == 2


def test_spectrum_of_an_instance_the_file_builds_when_imported(netfile, tmp_path, capsys, monkeypatch):
    """``FILE.py:instance`` names a module-level nn.Module. The first import ran inside the meta-device shape pass,
    so the instance was built on the meta device and the certified bound failed ("Cannot copy out of meta tensor");
    the file is now imported on the CPU whoever imports it first: the bound is the class spec's, to the last digit."""
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(1)
    state = build_model("nets/net.py:Net(width=2)").state_dict()
    torch.save(state, tmp_path / "ckpt.pt")
    bounds = []
    for spec in ("nets/net.py:instance", "nets/net.py:Net(width=2)"):
        code = main(["spectrum", "ckpt.pt", "--model", spec, "--input-shape", "3,8,8", "--no-progress", "--out",
                     str(tmp_path / spec.split(":")[1][:8])])
        captured = capsys.readouterr()
        assert code == 0 and "warning" not in captured.err, captured.err
        bounds.append(captured.out.split("L = ")[1].split()[0])
    assert bounds[0] == bounds[1]
    assert next(build_imported("nets/net.py:instance").parameters()).device.type == "cpu"
