"""Load a checkpoint safely and find its conv layers.

``torch.load(..., weights_only=True)`` only rebuilds tensors and plain containers. A file that needs to run code
(a pickled module or custom class) is refused unless the user opts in with ``trust=True``
(``--trust-checkpoint``).
"""

from __future__ import annotations

import json
import math
import pickle
import pickletools
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from svbench.errors import UserError, first_line
from svbench.models.imported import current_folder_importable

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module", "weights")


def load_state_dict(path: str | Path, *, trust: bool = False) -> dict[str, Tensor]:
    """The checkpoint's tensors by name (a state dict, a wrapper dict's ``state_dict`` / ``model`` ..., a pickled
    model's ``state_dict()``)."""
    return load_checkpoint(path, trust=trust)[0]


def load_checkpoint(path: str | Path, *, trust: bool = False) -> tuple[dict[str, Tensor], nn.Module | None]:
    """(the checkpoint's tensors by name, the nn.Module it pickles or None). A pickled model (``torch.save(model)``,
    or under a wrapper key: ``{"model": model}``) needs ``trust``: unpickling it runs code from the file."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"checkpoint not found: {p}")
    if p.is_dir():
        raise UserError(f"{p} is a folder; pass a checkpoint file (.pt/.pth or .safetensors)")
    if p.suffix == ".safetensors" or _looks_like_safetensors(p):
        return _strip_wrapper_prefixes(_nonempty(read_safetensors(p), p)), None
    try:
        with warnings.catch_warnings(), torch.sparse.check_sparse_tensor_invariants(enable=True):
            # sparse tensors are validated as they load: torch 2.11 does not by default, and a sparse tensor with an
            # index beyond its size would be written out of bounds when read densely (a crash, or worse); torch
            # 2.14 validates and says so on every such load (silenced: svbench reads them densely)
            warnings.filterwarnings("ignore", message="Validating sparse tensor invariants", category=UserWarning)
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not _is_wellformed(p):
            raise UserError(f"cannot read checkpoint {p}: not a PyTorch checkpoint or corrupt") from None
        if not trust:
            raise UserError(
                f"{p} is not a plain state dict: loading it would run code from the file ({_unsafe_global(e)}); "
                f"if you trust it, pass --trust-checkpoint"
            ) from None
        try:  # a pickled model names the module of its class (models.resnet): found from the current folder too,
            with current_folder_importable():  # as by the `python train.py` that saved it
                obj = torch.load(p, map_location="cpu", weights_only=False)
        except ModuleNotFoundError as e2:
            raise UserError(f"cannot load checkpoint {p}: it pickles objects of module {e2.name!r}, which is not "
                            f"importable here; run svbench from the folder it was saved in, or put that code on "
                            f"PYTHONPATH") from None
        except Exception as e2:  # noqa: BLE001 - any failure of an untrusted file is a user error
            raise UserError(f"cannot load checkpoint {p}: {first_line(e2)}") from None
    except Exception as e:  # noqa: BLE001 - torch's unpickler fails on a text file with IndexError, on others with
        # RuntimeError, EOFError, ValueError...: any failure to read the file is the file's
        why = f" ({first_line(e)})" if isinstance(e, (RuntimeError, OSError, ValueError)) else ""  # not "(101)"
        raise UserError(f"cannot read checkpoint {p}: not a PyTorch checkpoint or corrupt{why}") from None
    return _unwrap(obj, p), _pickled_module(obj)


# safetensors dtype codes (the format's own names) -> torch dtypes; the float8 ones where this torch has them
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
    "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
    **{code: getattr(torch, name) for code, name in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"))
       if hasattr(torch, name)},
}
_SAFETENSORS_MAX_HEADER = 100 * 2**20  # the format's own limit is 100 MB


def _looks_like_safetensors(p: Path) -> bool:
    """A little-endian u64 header length that fits the file, then the header's opening brace."""
    with open(p, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return int.from_bytes(head[:8], "little") <= min(p.stat().st_size - 8, _SAFETENSORS_MAX_HEADER)


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file (Hugging Face's format: a u64 header length, a JSON header naming each
    tensor's dtype, shape and byte range, then the raw little-endian data), read without the ``safetensors`` package
    and without running anything: the format holds data only, so no ``--trust-checkpoint`` is needed. Every header
    entry is checked against the file (dtype, shape, byte range and size); a bad one is one line."""
    p = Path(path)
    data = bytearray(p.read_bytes())  # one copy, shared by the tensors (torch.frombuffer needs a writable buffer)

    def bad(why: str) -> UserError:
        return UserError(f"cannot read checkpoint {p}: not a valid safetensors file ({why})")

    if len(data) < 8:
        raise bad("shorter than its 8-byte header length")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, _SAFETENSORS_MAX_HEADER):
        raise bad(f"a header of {n} bytes in a file of {len(data)}")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("its header is not JSON") from None
    if not isinstance(header, dict):
        raise bad("its header is not a JSON object")
    base, size, out = 8 + n, len(data) - 8 - n, {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and isinstance(info.get("shape"), list) and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in info["shape"])
                and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2 and all(
                isinstance(o, int) and not isinstance(o, bool) for o in info["data_offsets"])):
            raise bad(f"tensor {name!r}: expected dtype, shape and data_offsets")
        dtype = _SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise bad(f"tensor {name!r} has dtype {info.get('dtype')!r}; svbench reads "
                      f"{', '.join(_SAFETENSORS_DTYPES)}")
        begin, end = info["data_offsets"]
        numel = math.prod(info["shape"])
        if not 0 <= begin <= end <= size or end - begin != numel * dtype.itemsize:
            raise bad(f"tensor {name!r}: bytes {begin}..{end} of {size} do not hold {info['dtype']} {info['shape']}")
        flat = (torch.frombuffer(data, dtype=dtype, count=numel, offset=base + begin) if numel
                else torch.empty(0, dtype=dtype))
        out[str(name)] = flat.reshape(info["shape"])
    return out


def _nonempty(tensors: dict[str, Tensor], p: Path) -> dict[str, Tensor]:
    if not tensors:
        raise UserError(f"{p} holds no tensors (expected a state dict, or a dict with a 'state_dict' entry)")
    return tensors


def _pickled_module(obj: Any) -> nn.Module | None:
    """The model a checkpoint pickles, unwrapped as its state dict's keys are (DataParallel / DDP's ``module``,
    torch.compile's ``_orig_mod``: the names the geometry pass gives must be the state dict's)."""
    if isinstance(obj, dict):
        obj = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), nn.Module)), None)
    if not isinstance(obj, nn.Module):
        return None
    while True:
        if isinstance(obj, nn.DataParallel | nn.parallel.DistributedDataParallel):
            obj = obj.module
        elif isinstance(getattr(obj, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            obj = obj._orig_mod
        else:
            return obj


def _is_wellformed(p: Path) -> bool:
    """True for a torch zip archive or a pickle stream that parses (without executing anything)."""
    if zipfile.is_zipfile(p):
        return True
    try:
        with open(p, "rb") as f:
            for _ in pickletools.genops(f):
                pass
        return True
    except Exception:  # noqa: BLE001 - any parse failure means "not a pickle"
        return False


def _unsafe_global(e: BaseException) -> str:
    """What torch's weights-only loader refused, e.g. 'it pickles torch.nn.modules.container.Sequential' (torch's
    message is a page of advice; its first line says nothing of the file)."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
    return f"it pickles {m.group(1)}" if m else first_line(e)


def _unwrap(obj: Any, p: Path) -> dict[str, Tensor]:
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                inner = inner.state_dict()
            if isinstance(inner, dict) and any(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)} if isinstance(obj, dict) else {}
    return _strip_wrapper_prefixes(_nonempty(tensors, p))


# prefixes a wrapper adds to every key: nn.DataParallel / DistributedDataParallel ("module."), torch.compile
# ("_orig_mod."), in either order
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip_wrapper_prefixes(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Keys without the prefixes a DataParallel or torch.compile wrapper put on EVERY key (a model's own submodule
    named ``module`` keeps its name: only a prefix that all keys share is a wrapper's)."""
    while True:
        prefix = next((w for w in _WRAPPER_PREFIXES if all(k.startswith(w) for k in tensors)), None)
        if prefix is None:
            return tensors
        tensors = {k[len(prefix):]: v for k, v in tensors.items()}


@dataclass(frozen=True)
class ConvEntry:
    """One conv layer of a checkpoint: its full kernel, TT cores folded to an exact core (Theorem 1), or the weight
    and scale of a Cayley orthogonal conv (whose operator is the Cayley transform of the weight, not a conv with
    it)."""

    name: str
    # (c_out, c_in, kh, kw); for TT layers the folded middle core (r2, r1, k, k); for Cayley layers the stored weight
    # (c_out, c_in s^2, k_eff, k_eff) after the layer's space-to-depth
    kernel: Tensor
    c_out: int
    c_in: int  # Cayley: c_in s^2 (the stride is not in the state dict; a model gives it)
    kind: str  # "conv", "tt" or "cayley"
    tt_factors: tuple[Tensor, Tensor] | None = None  # (K1, K3) of a TT layer, for orthogonality checks
    alpha: Tensor | None = None  # the Cayley layer's scale
    via: str | None = None  # "spectral_norm" / "weight_norm": the kernel is the eval weight rebuilt from its parts
    keys: tuple[str, ...] = ()  # the state-dict keys it was rebuilt from (a model's conv NAME.weight stands for them)


def _dense(key: str, t: Tensor) -> Tensor:
    """The tensor as a dense CPU-readable one; a tensor without data (meta device) is refused with one line."""
    if t.is_meta:
        raise UserError(f"'{key}' has no data (a meta-device tensor); save the checkpoint with real weights")
    if t.layout == torch.strided:
        return t
    with torch.sparse.check_sparse_tensor_invariants(enable=True):  # validated at load; says so to torch 2.11 too
        return t.to_dense()


def _skip(key: str, t: Tensor) -> str | None:
    """Why a 4-D floating weight cannot be read as a conv kernel (None: it can; non-square kernels, e.g.
    Inception's 1 x 7, are read since session 14)."""
    if t.numel() == 0:
        return f"'{key}' (empty, shape {tuple(t.shape)})"
    return None


def _spectral_norm_weight(orig: Tensor, u: Tensor, v: Tensor) -> Tensor | None:
    """The eval-mode weight of torch's spectral_norm (either API): orig / (u^T W v), W the weight with the
    normalised dimension first, flattened. That dimension (0 for convs, 1 for transposed convs) is not in the state
    dict: it is the one whose W v points along the stored u (torch's last power-iteration step sets u from v)."""
    if u.dim() != 1 or v.dim() != 1:
        return None
    best = None
    for dim in (0, 1):
        mat = orig.movedim(dim, 0).flatten(1)
        if mat.shape != (u.numel(), v.numel()):
            continue
        wv = mat.double() @ v.double()
        miss = float((wv / wv.norm().clamp_min(1e-300) - u.double()).norm())
        if best is None or miss < best[0]:
            best = (miss, torch.dot(u.double(), wv))
    if best is None:
        return None
    return (orig.double() / best[1]).to(orig.dtype)


def _weight_norm_weight(g: Tensor, v: Tensor) -> Tensor | None:
    """The weight of torch's weight_norm (either API): g v / ||v||, the norm over every dimension but the one g
    keeps (its only dimension above 1; all of v when g is a single number)."""
    if g.dim() != v.dim():
        return None
    kept = [d for d in range(g.dim()) if g.shape[d] != 1]
    if len(kept) > 1 or any(g.shape[d] != v.shape[d] for d in kept):
        return None
    dims = [d for d in range(v.dim()) if d not in kept]
    norm = v.double().square().sum(dim=dims, keepdim=True).sqrt().clamp_min(1e-300)
    return (v.double() * (g.double() / norm)).to(v.dtype)


def _parametrized(state: dict[str, Tensor], skipped: list[str]) -> dict[str, tuple[Tensor, str, tuple[str, ...]]]:
    """prefix -> (eval weight, how, keys) for every 4-D weight a spectral_norm or weight_norm keeps in parts (old
    hook API: NAME.weight_orig / _u / _v, NAME.weight_g / _v; parametrizations: NAME.parametrizations.weight.
    original + 0._u / 0._v, or original0 / original1). Other parametrizations (orthogonal, chained ones) are named in
    ``skipped``: their weight is not a formula of the stored tensors svbench knows."""
    out = {}
    for key, t in state.items():
        if not isinstance(t, Tensor):
            continue
        if key.endswith(".weight_orig") and t.dim() == 4:
            p = key[: -len(".weight_orig")]
            keys = (key, f"{p}.weight_u", f"{p}.weight_v")
            how = "spectral_norm"
            w = _spectral_norm_weight(_dense(key, t), state.get(keys[1]), state.get(keys[2])) \
                if all(isinstance(state.get(k), Tensor) for k in keys[1:]) else None
        elif key.endswith(".weight_g") and isinstance(state.get(key[: -2] + "_v"), Tensor) \
                and state[key[: -2] + "_v"].dim() == 4:
            p = key[: -len(".weight_g")]
            keys, how = (key, f"{p}.weight_v"), "weight_norm"
            w = _weight_norm_weight(_dense(key, t), _dense(keys[1], state[keys[1]]))
        elif ".parametrizations.weight.original" in key and t.dim() == 4:
            p = key[: key.index(".parametrizations.weight.original")]
            base = f"{p}.parametrizations.weight"
            if key != f"{base}.original1" and key != f"{base}.original":
                continue  # original0 (weight_norm's g) is read with original1
            parts = sorted(k for k in state if k.startswith(f"{base}."))
            if key == f"{base}.original1" and parts == [f"{base}.original0", key]:
                keys, how = (f"{base}.original0", key), "weight_norm"
                w = _weight_norm_weight(_dense(keys[0], state[keys[0]]), _dense(key, t))
            elif parts == sorted([key, f"{base}.0._u", f"{base}.0._v"]):
                keys, how = (key, f"{base}.0._u", f"{base}.0._v"), "spectral_norm"
                w = _spectral_norm_weight(_dense(key, t), state[keys[1]], state[keys[2]])
            else:
                extra = [k[len(base) + 1:] for k in parts if k != key]
                skipped.append(f"{key!r} (a parametrization svbench does not rebuild: {', '.join(extra)}; read "
                               f"spectral_norm and weight_norm only -- save the model after torch.nn.utils."
                               f"parametrize.remove_parametrizations)")
                continue
        else:
            continue
        if w is None or not w.is_floating_point():
            skipped.append(f"{key!r} ({how} parts whose shapes do not fit together)")
            continue
        out[p] = (w, how, keys)
    return out


def find_convs(state: dict[str, Tensor]) -> list[ConvEntry]:
    """Every 4-D ``*.weight`` tensor (a conv kernel; with a scalar ``*.alpha`` beside it, a Cayley layer) and every
    TT layer (``*.k1``, ``*.k2``, ``*.k3``).

    Empty weights, 3-D / 5-D weights (Conv1d / Conv3d), 4-D weights that are not real floats (integer, complex) and
    non-square Cayley kernels are skipped with a one-line warning; TT cores that do not chain are an error."""
    out: list[ConvEntry] = []
    skipped: list[str] = []
    tt_prefixes = {k[: -len(".k2")] for k in state if k.endswith(".k2")}
    rebuilt = _parametrized(state, skipped)
    for prefix, (w, how, keys) in rebuilt.items():
        out.append(ConvEntry(prefix, w, w.shape[0], w.shape[1], "conv", via=how, keys=keys))
    for key, t in state.items():
        if not isinstance(t, Tensor) or not key.endswith(".weight") or key[: -len(".weight")] in rebuilt:
            continue
        if t.dim() in (3, 5):  # Conv1d / Conv3d kernels: said, so a missing layer is not a mystery
            skipped.append(f"{key!r} ({t.dim()}-D: a Conv{t.dim() - 2}d kernel? svbench reads 2-D convs)")
            continue
        if t.dim() == 4 and not t.is_floating_point():
            skipped.append(f"{key!r} ({t.dtype} weights: quantized or complex kernels are not read; dequantize to "
                           f"float first)")
            continue
        if t.dim() == 4:
            t = _dense(key, t)
            why = _skip(key, t)
            if why:
                skipped.append(why)
                continue
            prefix = key[: -len(".weight")]
            alpha = state.get(f"{prefix}.alpha")
            if alpha is not None and alpha.dim() == 0 and alpha.is_floating_point():  # a CayleyConv2d
                if t.shape[-1] != t.shape[-2]:
                    skipped.append(f"{key!r} (a Cayley layer with a non-square {t.shape[-2]}x{t.shape[-1]} kernel; "
                                   f"svbench's Cayley convs are square)")
                    continue
                out.append(ConvEntry(prefix, t, t.shape[0], t.shape[1], "cayley", alpha=_dense(f"{prefix}.alpha",
                                                                                               alpha)))
                continue
            out.append(ConvEntry(prefix, t, t.shape[0], t.shape[1], "conv"))
    for prefix in sorted(tt_prefixes):
        from svbench.functional.tt import fold_cores

        k1, k2, k3 = (None if t is None else _dense(f"{prefix}.{n}", t)
                      for n, t in (("k1", state.get(f"{prefix}.k1")), ("k2", state[f"{prefix}.k2"]),
                                   ("k3", state.get(f"{prefix}.k3"))))
        _check_tt_cores(prefix, k1, k2, k3)
        core, q1, q3 = fold_cores(k1, k2, k3)
        c_in = k1.shape[0] if k1 is not None else k2.shape[1]
        c_out = k3.shape[1] if k3 is not None else k2.shape[0]
        out.append(ConvEntry(prefix, core, c_out, c_in, "tt", (q1, q3)))
    order = {k: i for i, k in enumerate(state)}
    out.sort(key=lambda e: order.get(e.name + ".weight", order.get(e.name + ".k2", order.get(e.keys[0], 0)
                                                                          if e.keys else 0)))
    if not out:
        if skipped:
            raise UserError(f"the checkpoint has no readable conv weights: skipped {', '.join(skipped)}")
        raise UserError("the checkpoint has no conv weights (no 4-D '*.weight' tensors and no TT cores)")
    if skipped:
        warnings.warn(f"skipped {', '.join(skipped)}", stacklevel=2)
    return out


def _check_tt_cores(prefix: str, k1: Tensor | None, k2: Tensor, k3: Tensor | None) -> None:
    """K1 (c_in, r1), K2 (r2, r1, kh, kw), K3 (r2, c_out) must chain; else one line naming the shapes."""
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in (("k1", k1), ("k2", k2), ("k3", k3)) if t is not None)
    ok = (k2.dim() == 4 and k2.is_floating_point() and k2.numel() > 0
          and (k1 is None or (k1.dim() == 2 and k1.is_floating_point() and k1.shape[1] == k2.shape[1]))
          and (k3 is None or (k3.dim() == 2 and k3.is_floating_point() and k3.shape[0] == k2.shape[0])))
    if not ok:
        raise UserError(f"TT layer '{prefix}': cores {shapes} do not chain (expected k1 (c_in, r1), "
                        f"k2 (r2, r1, kh, kw), k3 (r2, c_out)); the checkpoint is corrupt or not a svbench TT model")
