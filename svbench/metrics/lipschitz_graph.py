"""Guaranteed l2 Lipschitz bounds of whole models -- residual sums and concatenations included -- by composing
per-layer bounds along the model's torch.fx graph (certified accuracy: Tsuzuku, Sato & Sugiyama, NeurIPS 2018).

Every value v of the forward pass gets L(v), a bound on ||v(x) - v(y)|| / ||x - y|| over any two inputs x, y of
one example (pixel units, l2). The model's input has L = 1; parameters, buffers, shapes and anything computed from
them alone have L = 0 (they do not move with x). The rules, each a guaranteed bound:

- a layer f(u) -- a module or a functional activation / pooling -- gives Lip(f) L(u), with Lip(f) from
  ``certified.layer_bound`` on the input shape the layer really sees (exact or guaranteed per layer);
- a residual sum or difference u +- w: L(u) + L(w) (triangle inequality); c u for a number c: |c| L(u); u times
  or over a constant tensor: max |t| L(u) or L(u) / min |t| (a diagonal scaling);
- a concatenation along a non-batch axis: sqrt(sum L(u_i)^2) (the squared differences add up);
- reshapes, flattens, permutations of non-batch axes, slices, splits, constant padding (any fill value), dropout
  and torchvision's stochastic depth in eval mode: L(u) (isometries, isometric embeddings and coordinate
  projections never expand);
- a mean over m entries per output: L(u) / sqrt(m); a sum: sqrt(m) L(u);
- an in-place op gives its bound to the tensor it overwrites; values that may share that tensor's storage (views)
  get sqrt(theirs^2 + the op's^2);
- a layer's forward hooks must not change its input or output (checked on the probe), and no module fx traces
  through may carry hooks: the bound is of the forward the graph records.

``fold=True`` (the default) treats a conv and the eval-mode affine maps next to it as ONE layer when nothing else
reads the value between them: a plain Conv2d (parametrized ones too) or a TT conv whose only user is an eval
BatchNorm2d gets the BN's per-channel scale gamma / sqrt(var + eps) folded into its output channels (a TT conv: into
its outer core), and a ``Normalize`` whose only user is such a conv with groups 1 gets its 1 / std folded into the
conv's input channels -- so a model trained with ``tt`` is bounded on the same terms as its plain twin. The
composition's sigma_max (exact or guaranteed by the conv's route, ``certified.conv_layer_bound``) is never above the
product of the factors and is usually far below it: a trained network's BN scales vary by channel.

What is exact and what is a bound: every factor is a guaranteed bound, so L(output) is a guaranteed Lipschitz
bound of the model; it is NOT the Lipschitz constant (sums and products of bounds overestimate; on a chain without
nonlinearities or folds it is the product of the layers' norms). Anything no rule covers -- the product of two
input-dependent values, an input-dependent value broadcast against a larger one, an op not listed, several outputs
-- is refused with the op's name; nothing is guessed. A forward torch.fx cannot trace (control flow on tensor
values) is refused too; ``certified.lipschitz_bound`` then falls back to the product along the forward order for
models marked ``is_chain``.
"""

from __future__ import annotations

import copy
import inspect
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from svbench.errors import UserError, first_line

_PROBE_BATCH = 2  # the probe's batch: the first axis of every per-example value


class UntraceableModel(UserError):
    """torch.fx cannot trace the model's forward (control flow on tensor values, unsupported Python)."""


# --------------------------------------------------------------------------------------------------- tracing


def _leaf_types() -> tuple[type, ...]:
    from svbench.methods.cayley import CayleyConv2d
    from svbench.methods.tt import TTConv2d
    from svbench.models.normalize import Normalize
    from svbench.models.vgg import MaxMin

    # conv / linear / BN subclasses stay leaves too: ``layer_bound`` judges their forward (the dense operator of a
    # conv subclass with a forward of its own; a Linear one is refused)
    return (TTConv2d, CayleyConv2d, Normalize, MaxMin, nn.Conv2d, nn.ConvTranspose2d, nn.Linear,
            nn.modules.batchnorm._BatchNorm)


class _Tracer(fx.Tracer):
    """torch's leaves plus svbench's own layers and every parametrized module (spectral_norm, weight_norm): each is
    one layer with a bound of its own, never traced into."""

    def __init__(self, leaves: tuple[type, ...]) -> None:
        super().__init__()
        self.leaves = leaves

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        from torch.nn.utils import parametrize

        return (isinstance(m, self.leaves) or parametrize.is_parametrized(m)
                or super().is_leaf_module(m, module_qualified_name))


def trace(model: nn.Module) -> fx.GraphModule:
    """The model's forward as an fx graph (in eval mode: dropout and BN as at test time)."""
    tracer = _Tracer(_leaf_types())
    was = model.training
    model.eval()
    try:
        graph = tracer.trace(model)
    except Exception as e:  # fx raises TraceError, TypeError, NotImplementedError, ... for untraceable forwards
        raise UntraceableModel(f"cannot trace {type(model).__name__}'s forward with torch.fx ({first_line(e)}); a "
                               "certified bound needs a traceable forward, or a chain model (is_chain = True)") from e
    finally:
        model.train(was)
    hooked = _hooked_containers(model, tracer)
    if hooked:
        raise UntraceableModel(f"{type(model).__name__} has forward hooks on {hooked} (traced through, not called as "
                               "one layer): the traced graph would skip what they do; a certified bound needs the "
                               "hooks on layers, or a chain model (is_chain = True)")
    return fx.GraphModule(model, graph)


def _hooked_containers(model: nn.Module, tracer: _Tracer, prefix: str = "") -> str | None:
    """The first module fx traces through (not a leaf) that carries forward (pre-)hooks, or None."""
    if tracer.is_leaf_module(model, prefix) and prefix:
        return None
    if model._forward_hooks or model._forward_pre_hooks:
        return repr(prefix or "the model itself")
    for name, child in model.named_children():
        found = _hooked_containers(child, tracer, f"{prefix}.{name}" if prefix else name)
        if found:
            return found
    return None


# ------------------------------------------------------------------------------------------------- folding


@dataclass
class _Fold:
    """A plain conv node with the affine maps folded into it (input-channel and output-channel scales)."""

    names: list[str]
    types: list[str]
    in_scale: Tensor | None = None
    out_scale: Tensor | None = None
    absorbed: list[fx.Node] = field(default_factory=list)


def _module(gm: fx.GraphModule, node: Any) -> nn.Module | None:
    if isinstance(node, fx.Node) and node.op == "call_module":
        return gm.get_submodule(node.target)
    return None


def _foldable(mod: nn.Module | None) -> bool:
    """A plain Conv2d (parametrized too) or a TT conv (its outer cores take the scales). A Linear's BN axis depends
    on its input's shape: not folded."""
    from svbench.methods.base import is_plain
    from svbench.methods.tt import TTConv2d

    return mod is not None and (is_plain(mod) or isinstance(mod, TTConv2d))


def fold_plan(gm: fx.GraphModule) -> dict[fx.Node, _Fold]:
    """Which conv nodes absorb the eval BN after them and the Normalize before them."""
    from svbench.models.normalize import Normalize

    plan: dict[fx.Node, _Fold] = {}

    def entry(node: fx.Node) -> _Fold:
        mod = _module(gm, node)
        return plan.setdefault(node, _Fold([str(node.target)], [type(mod).__name__]))

    for node in gm.graph.nodes:
        bn = _module(gm, node)
        if not isinstance(bn, nn.BatchNorm2d) or bn.running_var is None or not node.args:
            continue
        src = node.args[0]
        if _foldable(_module(gm, src)) and len(src.users) == 1:
            f = entry(src)
            gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
            f.out_scale = (gamma.double() / torch.sqrt(bn.running_var.double() + bn.eps)).cpu()
            f.names.append(str(node.target))
            f.types.append(type(bn).__name__)
            f.absorbed.append(node)
    for node in gm.graph.nodes:
        norm = _module(gm, node)
        if not isinstance(norm, Normalize) or len(node.users) != 1:
            continue
        (user,) = node.users
        mod = _module(gm, user)
        if not _foldable(mod) or user.args[0] is not node or mod.groups != 1 or norm.std.numel() != mod.in_channels:
            continue
        f = entry(user)
        f.in_scale = (1.0 / norm.std.detach().double().reshape(-1)).cpu()
        f.names.insert(0, str(node.target))
        f.types.insert(0, type(norm).__name__)
        f.absorbed.append(node)
    return plan


def _folded_layer(mod: nn.Module, fold: _Fold) -> nn.Module:
    """A float64 CPU layer like ``mod`` whose operator is the folded composition's (biases move no difference): a
    plain conv with the scales in its weight, or a TT conv with them in its outer cores (K3's columns -- K2's output
    channels without K3 -- and K1's rows -- K2's input channels without K1)."""
    from svbench.methods.base import effective_weight
    from svbench.methods.tt import TTConv2d

    out_s = None if fold.out_scale is None else fold.out_scale.double()
    in_s = None if fold.in_scale is None else fold.in_scale.double()
    if isinstance(mod, TTConv2d):
        twin = copy.deepcopy(mod).double().cpu()
        with torch.no_grad():
            if out_s is not None and twin.k3 is not None:
                twin.k3.mul_(out_s[None, :])
            elif out_s is not None:
                twin.k2.mul_(out_s[:, None, None, None])
            if in_s is not None and twin.k1 is not None:
                twin.k1.mul_(in_s[:, None])
            elif in_s is not None:
                twin.k2.mul_(in_s[None, :, None, None])
        return twin
    w = effective_weight(mod).detach().double().cpu()
    if out_s is not None:
        w = w * out_s.reshape(-1, 1, 1, 1)
    if in_s is not None:
        w = w * in_s.reshape(1, -1, 1, 1)
    twin = nn.Conv2d(mod.in_channels, mod.out_channels, mod.kernel_size, mod.stride, mod.padding, mod.dilation,
                     mod.groups, bias=False, padding_mode=mod.padding_mode, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(w)
    return twin


# ------------------------------------------------------------------------------------------ op rules


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    return args[i] if len(args) > i else kwargs.get(name, default)


def _activation(target: Any, args: tuple, kwargs: dict) -> nn.Module | None:
    """The module twin of a functional activation (so the same bound applies), or None."""
    table: dict[Any, Callable[[], nn.Module]] = {
        F.relu: nn.ReLU, torch.relu: nn.ReLU, F.relu_: nn.ReLU, torch.relu_: nn.ReLU, "relu": nn.ReLU,
        "relu_": nn.ReLU, F.relu6: nn.ReLU6, F.hardtanh: nn.Hardtanh, F.hardtanh_: nn.Hardtanh,
        torch.sigmoid: nn.Sigmoid, F.sigmoid: nn.Sigmoid, "sigmoid": nn.Sigmoid, torch.tanh: nn.Tanh, F.tanh: nn.Tanh,
        "tanh": nn.Tanh, F.silu: nn.SiLU, F.mish: nn.Mish, F.hardswish: nn.Hardswish, F.hardsigmoid: nn.Hardsigmoid,
        F.selu: nn.SELU, torch.selu: nn.SELU, F.softsign: nn.Softsign, F.tanhshrink: nn.Tanhshrink,
        F.logsigmoid: nn.LogSigmoid,
        F.leaky_relu: lambda: nn.LeakyReLU(_arg(args, kwargs, 1, "negative_slope", 0.01)),
        F.elu: lambda: nn.ELU(_arg(args, kwargs, 1, "alpha", 1.0)),
        F.celu: lambda: nn.CELU(_arg(args, kwargs, 1, "alpha", 1.0)),
        F.gelu: lambda: nn.GELU(approximate=kwargs.get("approximate", "none")),
        F.softplus: nn.Softplus, F.softshrink: nn.Softshrink,
    }
    try:
        make = table.get(target)
    except TypeError:  # an unhashable target
        return None
    return make() if make is not None else None


_MAX_POOL_ARGS = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


def _pooling(target: Any, args: tuple, kwargs: dict) -> nn.Module | None:
    """The module twin of a functional 2-D pooling call, or None."""
    if target is F.avg_pool2d:  # same positional order as nn.AvgPool2d
        return nn.AvgPool2d(*args[1:], **kwargs)
    if target is F.adaptive_avg_pool2d:
        return nn.AdaptiveAvgPool2d(_arg(args, kwargs, 1, "output_size"))
    if target in (F.max_pool2d, torch.max_pool2d):
        kw = dict(zip(_MAX_POOL_ARGS, args[1:]), **kwargs)
        if kw.get("stride") in ((), [], None):
            kw["stride"] = None
        return nn.MaxPool2d(**kw)
    if target is F.adaptive_max_pool2d:
        return nn.AdaptiveMaxPool2d(_arg(args, kwargs, 1, "output_size"), _arg(args, kwargs, 2, "return_indices",
                                                                                 False))
    return None


_ADD = {operator.add, operator.iadd, torch.add, "add", "add_"}
_SUB = {operator.sub, operator.isub, torch.sub, torch.subtract, "sub", "sub_"}
_MUL = {operator.mul, operator.imul, torch.mul, torch.multiply, "mul", "mul_"}
_DIV = {operator.truediv, operator.itruediv, torch.div, torch.true_divide, "div", "div_", "true_divide"}
_NEG = {operator.neg, torch.neg, "neg"}
_SAME = {  # rearrangements and casts of each example's entries: norm-preserving
    torch.flatten, "flatten", "view", "reshape", torch.reshape, "contiguous", "clone", torch.clone, "squeeze",
    torch.squeeze, "unsqueeze", torch.unsqueeze, "permute", torch.permute, "transpose", torch.transpose, "float",
    "double", "to", "type_as", "view_as", "reshape_as", operator.pos,
}
_CONSTANT = {  # values built from the input's shape, dtype and device only
    torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, "new_zeros", "new_ones", "new_empty",
    "new_full",
}
_VIEWS = {  # ops whose result may share storage with their first argument
    "view", "reshape", torch.reshape, "flatten", torch.flatten, "contiguous", "squeeze", torch.squeeze, "unsqueeze",
    torch.unsqueeze, "permute", torch.permute, "transpose", torch.transpose, "view_as", "reshape_as", "to", "float",
    "double", "type_as", "narrow", "select", "expand", "t", "detach", torch.split, "split", torch.chunk, "chunk",
    torch.tensor_split, "tensor_split",
}
_SPLIT = {torch.split, "split", torch.chunk, "chunk", torch.tensor_split, "tensor_split"}
_CAT = {torch.cat, torch.concat, torch.concatenate}
_REDUCE = {torch.mean: "mean", "mean": "mean", torch.sum: "sum", "sum": "sum"}
_DROPOUT = {F.dropout, F.dropout2d, F.dropout1d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout}


def hooks_change_output(mod: nn.Module, hooked: Any, args: tuple, kwargs: dict | None = None) -> bool:
    """Whether ``mod``'s forward hooks changed its input or output on this call: ``hooked`` (what the hooked call
    returned on ``args``) against the plain forward on the same input, right after it (a weight a pre-hook computes,
    as the old spectral_norm does, is then already in place), equal up to float rounding. A layer's bound is of its
    forward: a pre-hook returning a new input or a hook returning a new output would make it another function's."""
    if not (mod._forward_hooks or mod._forward_pre_hooks):
        return False
    plain = mod.forward(*args, **(kwargs or {}))
    if not (_is_tensor(hooked) and _is_tensor(plain) and hooked.shape == plain.shape):
        return True
    atol = 1e-5 * float(plain.abs().max()) if plain.numel() else 0.0
    return not torch.allclose(hooked, plain, rtol=1e-5, atol=atol)


def _is_stochastic_depth(target: Any) -> bool:
    """torchvision.ops.stochastic_depth(input, p, mode, training): the identity when not training."""
    return getattr(target, "__name__", None) == "stochastic_depth" and "torchvision" in getattr(target, "__module__",
                                                                                              "")


def _name(target: Any) -> str:
    if isinstance(target, str):
        return f".{target}()"
    mod = getattr(target, "__module__", None) or ""
    return f"{mod + '.' if mod and mod != '_operator' else ''}{getattr(target, '__name__', repr(target))}"


def _is_tensor(v: Any) -> bool:
    return isinstance(v, Tensor)


def _has_tensor(v: Any) -> bool:
    """Whether a value holds a tensor (shapes, sizes and numbers do not move with the input)."""
    return _is_tensor(v) or (isinstance(v, (tuple, list)) and any(map(_has_tensor, v)))


@dataclass
class GraphBound:
    """The model's bound and, per layer call in forward order, its factor (as ``certified.lipschitz_bound``)."""

    value: float
    layers: list[dict[str, Any]]
    folded: int  # affine maps (BN, Normalize) folded into a neighbouring conv


class _Propagate(fx.Interpreter):
    """Runs the graph once on a probe batch and carries L(v) beside every value."""

    def __init__(self, gm: fx.GraphModule, plan: dict[fx.Node, _Fold], model_name: str,
                 input_shape: tuple[int, ...]) -> None:
        super().__init__(gm)
        self.extra_traceback = False  # fx would append the node and a traceback to the one-line refusals
        self.plan, self.model_name, self.input_shape = plan, model_name, input_shape
        self.absorbed = {n for f in plan.values() for n in f.absorbed}
        self.lip: dict[fx.Node, float] = {}
        self.views: dict[fx.Node, set[fx.Node]] = {}  # values that may share storage (an in-place op reaches all)
        self.layers: list[dict[str, Any]] = []

    # L of an argument: 0 for anything that is no node (numbers, None, slices) or no input-dependent node
    def _l(self, a: Any) -> float:
        return self.lip.get(a, 0.0) if isinstance(a, fx.Node) else 0.0

    def _deps(self, node: fx.Node) -> list[fx.Node]:
        out: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: out.append(n) if self.lip.get(n, 0.0) > 0 else None)
        return out

    def _refuse(self, node: fx.Node, why: str) -> UserError:
        return UserError(f"no guaranteed Lipschitz bound for {self.model_name}: {why} (node {node.name!r}); "
                         "svbench bounds layers, residual sums, concatenations, reshapes and scalings (README: "
                         "certified accuracy)")

    def run_node(self, n: fx.Node) -> Any:
        try:
            out = super().run_node(n)
        except (RuntimeError, ValueError, IndexError) as e:  # the model's own error on this input (not a rule's)
            shape = ",".join(map(str, self.input_shape))
            raise UserError(f"{self.model_name} does not run on a {shape} input ({first_line(e)}); pass the input "
                            "shape it was built for") from None
        if n.op == "call_module":
            self._check_hooks(n, out)
        if n.op == "placeholder":  # the input; any later one is an optional argument left at its default
            self.lip[n] = 0.0 if self.lip else 1.0
        elif n.op == "get_attr" or not self._deps(n) or (n.op != "output" and not _has_tensor(out)):
            self.lip[n] = 0.0  # constant with respect to the input
        elif n.op == "output":
            if not isinstance(n.args[0], fx.Node):
                raise self._refuse(n, "several outputs")
            self.lip[n] = self._l(n.args[0])
        else:
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            self.lip[n] = self._rule(n, args, kwargs, out)
            first = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
            if first is not None and _is_tensor(out) and (n.target in _VIEWS or n.target is operator.getitem):
                self._share(n, first)
            if first is not None and self._in_place(n):
                self._overwrite(first, n)
        return out

    def _share(self, a: fx.Node, b: fx.Node) -> None:
        group = self.views.get(a, {a}) | self.views.get(b, {b})
        for m in group:
            self.views[m] = group

    def _overwrite(self, target: fx.Node, op: fx.Node) -> None:
        """An in-place op wrote ``op``'s values into ``target``: its later readers get the op's bound. Values that may
        share its storage (views of it, or what it is a view of) had some entries overwritten: their bound becomes
        sqrt(theirs^2 + the op's^2), which covers any split of their entries between old and new values."""
        new = self.lip[op]
        for other in self.views.get(target, {target}) - {target, op}:
            self.lip[other] = math.hypot(self.lip.get(other, 0.0), new)
        self.lip[target] = new
        self._share(op, target)

    def _in_place(self, n: fx.Node) -> bool:
        """Whether the op overwrote its first argument (x.mul_(3), F.relu(x, inplace=True), nn.LeakyReLU(2,
        inplace=True)): later reads of that argument get the op's values, and its bound."""
        if n.op == "call_module":
            return bool(getattr(self.module.get_submodule(n.target), "inplace", False))
        if isinstance(n.target, str):
            return n.target.endswith("_") and not n.target.startswith("__")
        if getattr(n.target, "__name__", "").endswith("_"):
            return True
        try:
            bound = inspect.signature(n.target).bind_partial(*n.args, **n.kwargs)
        except (TypeError, ValueError):  # builtins without a Python signature take inplace as a keyword only
            return bool(n.kwargs.get("inplace", False))
        return bool(bound.arguments.get("inplace", False))

    def _check_hooks(self, node: fx.Node, hooked: Any) -> None:
        mod = self.module.get_submodule(node.target)
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if hooks_change_output(mod, hooked, args, kwargs):
            raise self._refuse(node, f"forward hooks change the input or output of layer {node.target!r}")

    def _layer(self, node: fx.Node, mod: nn.Module, in_value: Tensor) -> float:
        from svbench.metrics.certified import layer_bound

        shape = tuple(in_value.shape[1:])
        fold = self.plan.get(node)
        if fold is not None:
            res = layer_bound(_folded_layer(mod, fold), shape)
            assert res is not None
            b, src = res
            self.layers.append({"layer": "+".join(fold.names), "type": "+".join(fold.types), "bound": b,
                                "source": "folded into one layer (eval affine maps in the weight): " + src})
            return b
        res = layer_bound(mod, shape)
        if res is None:
            raise UserError(f"no guaranteed Lipschitz bound for layer {node.target!r} ({type(mod).__name__})")
        b, src = res
        self.layers.append({"layer": str(node.target), "type": type(mod).__name__, "bound": b, "source": src})
        return b

    def _rule(self, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> float:
        deps = self._deps(node)
        first = node.args[0] if node.args else None
        lead = self._l(first)
        if node.op == "call_module":
            if node in self.absorbed:
                return lead  # its factor is in the conv it was folded into
            if deps != [first] or not _is_tensor(args[0]):
                raise self._refuse(node, f"layer {node.target!r} takes the input through more than one argument")
            return self._layer(node, self.module.get_submodule(node.target), args[0]) * lead
        t = node.target
        for twin in (_activation(t, args, kwargs), _pooling(t, args, kwargs)):
            if twin is not None:
                if deps != [first] or not _is_tensor(args[0]):
                    raise self._refuse(node, f"{_name(t)} of more than one input-dependent value")
                if getattr(twin, "return_indices", False):
                    raise self._refuse(node, f"{_name(t)} with return_indices")
                res = self._layer_twin(twin, args[0])
                self.layers.append({"layer": node.name, "type": _name(t), "bound": res[0], "source": res[1]})
                return res[0] * lead
        if t in _CONSTANT:
            return 0.0
        if t in _ADD or t in _SUB:
            return self._sum(node, args, kwargs, out)
        if t in _CAT:
            tensors = _arg(node.args, node.kwargs, 0, "tensors")
            dim = _arg(args, kwargs, 1, "dim", 0)
            if dim % out.dim() == 0:
                raise self._refuse(node, f"{_name(t)} along the batch axis")
            if any(d not in tensors for d in deps):
                raise self._refuse(node, f"{_name(t)} with an input-dependent argument besides its tensors")
            return math.sqrt(sum(self._l(a) ** 2 for a in tensors))
        if t in _MUL or t in _DIV:
            return self._scale(node, args, out)
        # every rule below bounds a function of its first argument: any other input-dependent argument must be one
        # whose values it does not read (the *_as / to reference tensors: their shape, dtype and device only)
        if any(d is not first for d in deps) and t not in ("type_as", "view_as", "reshape_as", "to"):
            raise self._refuse(node, f"{_name(t)} reading the input through more than its first argument")
        if t in _NEG:
            return lead
        if t in _SAME or t is operator.getitem:
            self._keeps_examples(node, args, out)
            return lead
        if t in _SPLIT:
            dim = _arg(args, kwargs, 2, "dim", 0)
            if dim % args[0].dim() == 0:
                raise self._refuse(node, f"{_name(t)} along the batch axis")
            return lead
        if t is F.pad:
            mode = _arg(args, kwargs, 2, "mode", "constant")
            if mode != "constant" or len(_arg(args, kwargs, 1, "pad")) > 2 * (args[0].dim() - 1):
                raise self._refuse(node, f"F.pad with mode {mode!r} (copies pixels) or on the batch axis")
            return lead
        if t in _DROPOUT or _is_stochastic_depth(t):
            if _arg(args, kwargs, 3 if _is_stochastic_depth(t) else 2, "training", True):
                raise self._refuse(node, f"{_name(t)} in training mode")
            return lead
        if t in _REDUCE:
            return self._reduce(node, args, kwargs, _REDUCE[t]) * lead
        raise self._refuse(node, f"the operation {_name(t)}")

    def _layer_twin(self, twin: nn.Module, x: Tensor) -> tuple[float, str]:
        from svbench.metrics.certified import layer_bound

        res = layer_bound(twin, tuple(x.shape[1:]))
        assert res is not None
        return res

    def _sum(self, node: fx.Node, args: tuple, kwargs: dict, out: Any) -> float:
        """a + alpha b (torch.add / sub, the operators, the methods): L(a) + |alpha| L(b), each addend the shape of
        the result (a broadcast input-dependent addend repeats its entries: refused)."""
        alpha = abs(kwargs.get("alpha", 1))
        terms = [(node.args[i] if i < len(node.args) else node.kwargs.get(name), v, 1 if i == 0 else alpha)
                 for i, (name, v) in enumerate(zip(("input", "other"), (_arg(args, kwargs, 0, "input"),
                                                                        _arg(args, kwargs, 1, "other")), strict=True))]
        if len(node.args) > 2 or any(d not in [a for a, _, _ in terms] for d in self._deps(node)):
            raise self._refuse(node, f"{_name(node.target)} with an input-dependent value it does not add")
        total = 0.0
        for a, v, weight in terms:
            if self._l(a) > 0:
                if not _is_tensor(v) or not _is_tensor(out) or v.shape != out.shape:
                    raise self._refuse(node, "an input-dependent value broadcast in a sum")
                total += self._l(a) * weight
        return total

    def _scale(self, node: fx.Node, args: tuple, out: Any) -> float:
        deps = self._deps(node)
        pos = [i for i, a in enumerate(node.args) if a is deps[0]] if len(deps) == 1 else []
        if len(args) != 2 or len(pos) != 1:
            raise self._refuse(node, f"{_name(node.target)} of two input-dependent values (a product, e.g. "
                                     "squeeze-and-excitation gating, has no bounded slope everywhere)")
        if pos[0] == 1 and node.target in _DIV:
            raise self._refuse(node, f"{_name(node.target)} by an input-dependent value (no bounded slope "
                                     "everywhere)")
        x, c = args[pos[0]], args[1 - pos[0]]
        if not _is_tensor(out) or x.shape != out.shape:
            raise self._refuse(node, "an input-dependent value broadcast in a product")
        mag = c.detach().abs().double() if _is_tensor(c) else torch.tensor(abs(complex(c)), dtype=torch.float64)
        factor = float(mag.max()) if node.target in _MUL else 1.0 / float(mag.min())
        if not math.isfinite(factor):
            raise self._refuse(node, "division by zero")
        return factor * self._l(deps[0])

    def _keeps_examples(self, node: fx.Node, args: tuple, out: Any) -> None:
        """A rearrangement / selection must keep each example's entries apart (batch axis first and untouched)."""
        t = node.target
        x = args[0]
        if not _is_tensor(x):
            return  # indexing a tuple of values (a split's pieces): each piece is bounded by the tuple's L
        ok = _is_tensor(out) and out.dim() >= 1 and out.shape[0] == x.shape[0] == _PROBE_BATCH
        if t is operator.getitem:
            idx = args[1] if isinstance(args[1], tuple) else (args[1],)
            ok = ok and len(idx) > 0 and idx[0] == slice(None) and not any(map(_is_tensor, idx))
        elif t in ("permute", torch.permute):
            dims = args[1] if len(args) == 2 and isinstance(args[1], (tuple, list)) else args[1:]
            ok = ok and dims[0] % x.dim() == 0
        elif t in ("transpose", torch.transpose):
            ok = ok and all(d % x.dim() != 0 for d in args[1:3])
        if not ok:
            raise self._refuse(node, f"{_name(t)} mixes the examples of a batch")

    def _reduce(self, node: fx.Node, args: tuple, kwargs: dict, kind: str) -> float:
        x = args[0]
        dim = _arg(args, kwargs, 1, "dim", None)
        if dim is None:
            raise self._refuse(node, f"a {kind} over the batch axis")
        dims = [dim] if isinstance(dim, int) else list(dim)
        if any(d % x.dim() == 0 for d in dims):
            raise self._refuse(node, f"a {kind} over the batch axis")
        m = math.prod(x.shape[d] for d in dims)
        return 1 / math.sqrt(m) if kind == "mean" else math.sqrt(m)


def graph_lipschitz_bound(model: nn.Module, input_shape: tuple[int, ...], device: torch.device | str = "cpu", *,
                          fold: bool = True) -> GraphBound:
    """Guaranteed l2 Lipschitz bound of ``model`` (eval mode) on inputs of ``input_shape`` (C, H, W), composed
    along its fx graph (module docstring). Raises ``UntraceableModel`` when fx cannot trace it and ``UserError``
    naming the first value no rule covers."""
    gm = trace(model)
    plan = fold_plan(gm) if fold else {}
    p = next(model.parameters(), None)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    was = model.training
    model.eval()
    runner = _Propagate(gm, plan, type(model).__name__, tuple(input_shape))
    probe = torch.rand(_PROBE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))  # [0, 1] pixels
    try:
        with torch.no_grad():
            runner.run(probe.to(device=device, dtype=dtype))
    finally:
        model.train(was)
    out = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    return GraphBound(runner.lip[out], runner.layers, sum(len(f.absorbed) for f in plan.values()))


__all__ = ["GraphBound", "UntraceableModel", "fold_plan", "graph_lipschitz_bound", "hooks_change_output", "trace"]
