"""Lipschitz bounds composed along a model's fx graph (svbench.metrics.lipschitz_graph): residual sums,
concatenations, reshapes and folds.

What would fail: a sum bounded by the larger branch instead of both (x + x has L = 2: caught by the exact cases
and by the Jacobian checks), a concatenation bounded by its largest part (cat([x, 2x]) has sqrt(5)), a mean taken
as 1-Lipschitz, a fold that drops the BN's scale or the Normalize's 1/std (the folded bound must equal the dense
float64 operator norm of the composition), and any op let through without a rule (refused by name).

Every bound is checked against the spectral norm of the model's float64 Jacobian at random points (a lower bound
on the Lipschitz constant), on svbench's ResNet-18 and WRN-16 and on torchvision's ResNet-18.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svbench.errors import UserError
from svbench.metrics.certified import chain_lipschitz_bound, lipschitz_bound
from svbench.metrics.lipschitz_graph import UntraceableModel, graph_lipschitz_bound
from svbench.models.normalize import Normalize
from svbench.models.registry import build_model


def _randomise_bn(model: nn.Module, seed: int) -> nn.Module:
    """Trained-like BN statistics: per-channel scales that differ (random init has gamma 1, var 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.1)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.05)
    return model.eval()


def _jacobian_norms(model: nn.Module, shape: tuple[int, ...], points: int, seed: int) -> list[float]:
    """Spectral norms of the float64 Jacobian of the model at random points in [0, 1] (each <= the Lipschitz
    constant)."""
    model = model.double().eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(points):
        x = torch.rand(1, *shape, generator=g, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(lambda t: model(t.clone()), x)  # in-place models: a copy
        out.append(float(torch.linalg.matrix_norm(jac.reshape(-1, x.numel()), ord=2)))
    return out


class _Scale(nn.Module):
    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fn(x)


@pytest.mark.parametrize("fn, exact", [
    (lambda x: x + x, 2.0),
    (lambda x: -(3 * x) / 4, 0.75),
    (lambda x: -x * 0.5, 0.5),
    (lambda x: torch.cat([x, 2 * x], dim=1), 5 ** 0.5),
    (lambda x: torch.cat([x, x[:, :1]], 1), 2 ** 0.5),  # the first channel twice
    (lambda x: x.mean((2, 3)), 1 / 4),  # 16 pixels per channel
    (lambda x: torch.sum(x, dim=-1), 2.0),  # 4 entries per output
    (lambda x: F.pad(x, (1, 1, 0, 2), value=3.0).flatten(1).view(x.shape[0], 2, -1), 1.0),
    (lambda x: torch.add(torch.zeros_like(x), x, alpha=-3), 3.0),
    (lambda x: torch.add(x, other=x), 2.0),  # the second addend as a keyword: counted (it was not)
    (lambda x: torch.cat(tensors=[x, x], dim=2), 2 ** 0.5),
    (lambda x: torch.stack([x.size(0) * torch.ones(()), x.new_ones(())]).sum() + x, 1.0),  # shapes are constants
], ids=["x+x", "-(3x)/4", "-x*0.5", "cat(x,2x)", "cat(x,x[:1])", "mean", "sum", "pad+flatten+view", "add-alpha",
        "add-other-kw", "cat-kw", "shape-constant"])
def test_graph_rules_are_exact_on_linear_maps(fn, exact):
    """Maps whose Lipschitz constant is known in closed form: each rule gives it exactly (none is 'max of the
    branches' or 1 by assumption)."""
    value = graph_lipschitz_bound(_Scale(fn), (2, 4, 4)).value
    assert value == pytest.approx(exact, rel=1e-12)
    assert max(_jacobian_norms(_Scale(fn), (2, 4, 4), 2, 0)) == pytest.approx(exact, rel=1e-9)


class _Block(nn.Module):
    """Pre-activation block with a conv shortcut, a pooled and zero-channel-padded shortcut and a concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize([0.4, 0.5], [0.2, 0.7])
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1, padding_mode="circular")
        self.bn2 = nn.BatchNorm2d(4)
        self.short = nn.Conv2d(2, 4, 1, stride=2, bias=False)
        self.fc = nn.Linear(4 * 4 * 4 + 6 * 4 * 4, 3)

    def forward(self, x):  # type: ignore[no-untyped-def]
        x = self.norm(x)
        out = F.gelu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out)) + self.short(x)
        pooled = F.pad(F.avg_pool2d(x, 2), (0, 0, 0, 0, 0, 4))
        both = torch.cat([F.relu(out), pooled * 0.5], dim=1)
        return self.fc(torch.flatten(both, 1))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_residual_bound_is_at_least_the_jacobian_norm_and_folding_tightens(seed):
    torch.manual_seed(seed)
    model = _randomise_bn(_Block(), seed)
    folded, rows = lipschitz_bound(model, (2, 8, 8))
    plain = graph_lipschitz_bound(model, (2, 8, 8), fold=False)
    local = max(_jacobian_norms(model, (2, 8, 8), 4, seed))
    assert local <= folded * (1 + 1e-9)
    assert folded <= plain.value * (1 + 1e-12)
    assert folded < plain.value  # channel scales that differ: the composition is below the product
    assert [r["layer"] for r in rows][:3] == ["norm", "conv1+bn1", "gelu"]  # norm has 3 users: not folded
    assert plain.folded == 0 and "conv2+bn2" in [r["layer"] for r in rows]


def test_a_fold_is_the_exact_norm_of_the_composition():
    """Normalize -> circular conv -> BN: the folded layer's bound is the dense float64 operator norm of the three
    as one linear map (the circular route is exact)."""
    torch.manual_seed(3)
    model = _randomise_bn(nn.Sequential(Normalize([0.1, 0.2, 0.3], [0.25, 0.5, 2.0]),
                                        nn.Conv2d(3, 5, 3, padding=1, padding_mode="circular"),
                                        nn.BatchNorm2d(5)), 3)
    value, rows = lipschitz_bound(model, (3, 6, 6))
    assert [r["layer"] for r in rows] == ["0+1+2"] and "circular exact" in rows[0]["source"]
    (jac,) = _jacobian_norms(model, (3, 6, 6), 1, 0)  # a linear map: its Jacobian is the operator
    assert value == pytest.approx(jac, rel=1e-9)
    unfolded, _ = lipschitz_bound(model, (3, 6, 6), fold=False)
    assert unfolded > 1.2 * value


class _ChainBN(nn.Sequential):
    is_chain = True


def test_chain_models_get_the_chain_product_without_folds():
    torch.manual_seed(4)
    model = _randomise_bn(_ChainBN(Normalize([0.5], [0.5]), nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3),
                                   nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(),
                                   nn.Linear(2 * 3 * 3, 4)), 4)
    chain = chain_lipschitz_bound(model, (1, 6, 6))
    graph = graph_lipschitz_bound(model, (1, 6, 6), fold=False)
    assert graph.value == chain[0]
    assert graph.layers == chain[1]
    assert lipschitz_bound(model, (1, 6, 6))[0] <= chain[0]


@pytest.mark.parametrize("name, kwargs, shape", [
    ("resnet18", {"in_channels": 1, "image_size": 8}, (1, 8, 8)),
    ("wrn16_10", {"in_channels": 1, "image_size": 8, "widen": 1}, (1, 8, 8)),
    ("torchvision:resnet18", {"num_classes": 5}, (3, 16, 16)),
])
def test_residual_networks_get_a_bound_above_their_jacobian_norms(name, kwargs, shape):
    """svbench's ResNet-18 and WRN-16 (avg-pool and zero-channel shortcuts) and torchvision's ResNet-18 (max
    pool, in-place residual sums): were refused ("needs a chain model") before the graph route."""
    torch.manual_seed(5)
    model = _randomise_bn(build_model(name, **kwargs), 5)
    value, rows = lipschitz_bound(model, shape)
    assert max(_jacobian_norms(model, shape, 2, 5)) <= value * (1 + 1e-9)
    assert any("+" in r["layer"] for r in rows)  # BN folded into the convs


class _Fn(nn.Module):
    def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.fn = fn
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.fn(self.conv(x))


@pytest.mark.parametrize("fn, message", [
    (lambda x: x * x, r"of two input-dependent values"),
    (lambda x: 1 / x, r"by an input-dependent value"),
    (lambda x: torch.exp(x), r"the operation torch\.exp"),
    (lambda x: torch.sum(x, 0), r"over the batch axis"),
    (lambda x: x.sum(), r"over the batch axis"),
    (lambda x: torch.cat([x, x], 0), r"along the batch axis"),
    (lambda x: x.reshape(-1), r"mixes the examples"),
    (lambda x: x.transpose(0, 1), r"mixes the examples"),
    (lambda x: x[0], r"mixes the examples"),
    (lambda x: F.pad(x, (1, 1, 1, 1), mode="reflect"), r"mode 'reflect'"),
    (lambda x: x + x.mean((2, 3), keepdim=True), r"broadcast in a sum"),
    (lambda x: (x, x), r"several outputs"),
    (lambda x: F.dropout(x, 0.5, training=True), r"in training mode"),
    (lambda x: torch.neg(x, out=2 * x), r"reading the input through more than its first argument"),
], ids=["x*x", "1/x", "exp", "sum-batch", "sum-all", "cat-batch", "reshape-batch", "transpose-batch", "index-batch",
        "reflect", "broadcast", "two-outputs", "dropout-train", "neg-out-kw"])
def test_ops_without_a_rule_are_refused_by_name(fn, message):
    with pytest.raises(UserError, match=rf"no guaranteed Lipschitz bound for _Fn: .*{message}.*\(node '") as err:
        lipschitz_bound(_Fn(fn), (2, 4, 4))
    assert "\n" not in str(err.value)  # fx appends the node and a traceback to errors unless told not to


class _Branchy(nn.Module):
    is_chain = False

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.conv(x) if x.sum() >= 0 else x  # control flow on a tensor value: fx cannot trace it


def test_untraceable_models_are_refused_unless_they_are_chains():
    with pytest.raises(UntraceableModel, match=r"cannot trace _Branchy's forward with torch\.fx .*is_chain"):
        lipschitz_bound(_Branchy(), (1, 4, 4))

    class Chain(_Branchy):
        is_chain = True

    value, rows = lipschitz_bound(Chain(), (1, 4, 4))  # the product along the forward order
    assert [r["layer"] for r in rows] == ["conv"] and value == rows[0]["bound"]


def test_a_linear_subclass_with_its_own_forward_is_refused():
    class Scaled(nn.Linear):
        def forward(self, x):  # type: ignore[no-untyped-def]
            return super().forward(3 * x)

    with pytest.raises(UserError, match="a Linear subclass with a forward of its own"):
        lipschitz_bound(nn.Sequential(nn.Flatten(), Scaled(4, 2)), (1, 2, 2))


def test_train_task_certifies_a_residual_model(tmp_path, capsys):
    """The train cell records lipschitz_bound and certified accuracy for ResNet-18 (skipped before: 'needs a chain
    model')."""
    from conftest import certified_train_records

    records = certified_train_records(tmp_path, capsys, "resnet18", 0.01)
    assert records["lipschitz_bound"]["status"] == "ok" and records["lipschitz_bound"]["value"] > 1
    assert records["certified_accuracy@0.01"]["status"] == "ok"


def test_ls_models_names_each_certified_route(monkeypatch):
    """`svbench ls models` says how each model is certified: along its graph, as a chain, or not at all."""
    from rich.console import Console

    from svbench.cli.ls import _models_table
    from svbench.models.registry import MODELS

    class Chain(_Branchy):
        is_chain = True

    monkeypatch.setitem(MODELS._items, "zz_branchy", lambda **_: _Branchy())
    monkeypatch.setitem(MODELS._items, "zz_chain", lambda **_: Chain())
    console = Console(width=300, record=True)
    console.print(_models_table("*"))
    rows = {line.split()[1]: line for line in console.export_text().splitlines() if line.startswith("│")}
    assert "graph" in rows["resnet18"] and "graph" in rows["small_cnn"]
    assert " chain " in rows["zz_chain"] and "no (untraceable)" in rows["zz_branchy"]


def test_an_input_the_model_does_not_take_is_one_line():
    with pytest.raises(UserError, match=r"ResNet18 does not run on a 3,32,32 input \(.*\); pass the input shape"):
        lipschitz_bound(build_model("resnet18", in_channels=1, image_size=32), (3, 32, 32))


def test_torchvision_stochastic_depth_is_the_identity_in_eval():
    from torchvision.ops import stochastic_depth

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return x + stochastic_depth(self.conv(x), 0.2, "row", self.training)

    model = Net()
    value, rows = lipschitz_bound(model, (2, 4, 4))
    assert value == pytest.approx(1 + rows[0]["bound"], rel=1e-12)
    assert max(_jacobian_norms(model, (2, 4, 4), 1, 0)) <= value * (1 + 1e-9)


def test_hooks_on_a_traced_through_module_are_refused_not_skipped():
    """A forward hook on a container changes its output, but the graph fx records is the container's forward
    without it: the bound would be of another function. Hooks on layers run (they are called as modules)."""
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 3, padding=1)), nn.Flatten())
    model[0].register_forward_hook(lambda mod, args, out: 100 * out)
    with pytest.raises(UntraceableModel, match=r"forward hooks on '0' \(traced through"):
        lipschitz_bound(model, (1, 4, 4))
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten())
    model[0].register_forward_hook(lambda mod, args, out: out)  # on a layer: called as it is
    assert lipschitz_bound(model, (1, 4, 4))[0] > 0


@pytest.mark.parametrize("hook", ["post", "pre"])
def test_hooks_that_change_a_layers_output_are_refused(hook):
    """A hook on a layer that returns a new output (or a pre-hook returning a new input) makes the layer another
    function than its weight says: refused (layer_bound would give the plain conv's norm, 1/100 of the truth)."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.Flatten())
    if hook == "post":
        model[0].register_forward_hook(lambda mod, args, out: 100 * out)
    else:
        model[0].register_forward_pre_hook(lambda mod, args: (100 * args[0],))
    with pytest.raises(UserError, match=r"forward hooks change the input or output of layer '0'"):
        lipschitz_bound(model, (1, 4, 4))


def test_old_style_spectral_norm_hooks_are_layers_as_they_compute():
    """torch.nn.utils.spectral_norm (the hook API) sets the weight in a pre-hook and returns nothing: accepted, and
    the bound is of the weight the forward uses."""
    torch.manual_seed(0)
    model = nn.Sequential(torch.nn.utils.spectral_norm(nn.Conv2d(2, 3, 3, padding=1)), nn.Flatten()).eval()
    value, rows = lipschitz_bound(model, (2, 5, 5))
    assert max(_jacobian_norms(model, (2, 5, 5), 1, 0)) <= value * (1 + 1e-9)


def test_the_chain_route_refuses_hooks_that_change_a_layer_too():
    class Chain(_Branchy):  # untraceable: the chain product along the forward order
        is_chain = True

    model = Chain()
    model.conv.register_forward_hook(lambda mod, args, out: 100 * out)
    with pytest.raises(UserError, match=r"layer 'conv' \(Conv2d\): forward hooks change its input or output"):
        lipschitz_bound(model, (1, 4, 4))


@pytest.mark.parametrize("r1, r2", [(2, 3), (3, 5), (3, 2)], ids=["both-cores", "no-k1-no-k3", "no-k1"])
def test_a_tt_conv_folds_its_bn_and_normalize_like_a_plain_conv(r1, r2):
    """Normalize -> TT conv (circular) -> BN: the folded bound is the composition's exact norm (dense float64), as
    for a plain conv, so a model trained with ``tt`` is not bounded on worse terms than its plain twin."""
    from svbench.methods.tt import TTConv2d

    torch.manual_seed(6)
    tt = TTConv2d(3, 5, 3, padding_mode="circular", r1=r1, r2=r2)
    with torch.no_grad():
        for p in tt.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model = _randomise_bn(nn.Sequential(Normalize([0.1, 0.2, 0.3], [0.25, 0.5, 2.0]), tt, nn.BatchNorm2d(5)), 6)
    value, rows = lipschitz_bound(model, (3, 6, 6))
    assert [r["layer"] for r in rows] == ["0+1+2"] and "TT folded core" in rows[0]["source"]
    (jac,) = _jacobian_norms(model, (3, 6, 6), 1, 0)
    assert value == pytest.approx(jac, rel=1e-9)
    assert lipschitz_bound(model, (3, 6, 6), fold=False)[0] > 1.2 * value


def _leaky_twice(x):  # type: ignore[no-untyped-def]
    F.leaky_relu(x, 2.0, True)  # overwrites x with a slope-2 map of itself
    return x


def _mul_in_place(x):  # type: ignore[no-untyped-def]
    x.mul_(3)
    return x + 0


def _view_then_overwrite(x):  # type: ignore[no-untyped-def]
    y = x * 1
    v = y.view(y.shape[0], -1)
    y.mul_(3)  # v shares y's storage: it now holds 3x
    return v


def _overwrite_a_slice(x):  # type: ignore[no-untyped-def]
    y = x * 1
    y[:, :1].mul_(4)  # the first channel of y, through a view
    return y


@pytest.mark.parametrize("fn, exact", [
    (_leaky_twice, 2.0),
    (_mul_in_place, 3.0),
    (nn.Sequential(nn.Identity(), _Scale(lambda x: x)), 1.0),
    (_view_then_overwrite, 10 ** 0.5),  # a bound: sqrt(1 + 3^2) >= the true 3
    (_overwrite_a_slice, 17 ** 0.5),  # sqrt(1 + 4^2) >= the true 4
], ids=["F.leaky_relu-inplace", "mul_", "no-op", "view-of-overwritten", "overwritten-slice"])
def test_in_place_ops_give_their_bound_to_the_tensor_they_overwrite(fn, exact):
    """The output is the overwritten input: its bound is the op's (was: the input's own, 1 instead of 2 or 3); a
    view of an overwritten tensor, or a tensor overwritten through a view, keeps a bound too."""
    model = fn if isinstance(fn, nn.Module) else _Scale(fn)
    value = graph_lipschitz_bound(model, (2, 3, 3)).value
    assert value == pytest.approx(exact, rel=1e-12)
    assert max(_jacobian_norms(model, (2, 3, 3), 1, 0)) <= value * (1 + 1e-12)


def test_an_in_place_module_gives_its_bound_to_its_input():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.LeakyReLU(2.0, inplace=True)

        def forward(self, x):  # type: ignore[no-untyped-def]
            y = x * 1  # a tensor of its own (the input itself is not overwritten)
            self.act(y)
            return y

    assert graph_lipschitz_bound(Net(), (1, 3, 3)).value == pytest.approx(2.0, rel=1e-12)
