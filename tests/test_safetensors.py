"""``.safetensors`` checkpoints (Hugging Face's data-only format; timm and transformers save it): read by svbench's
own reader -- no package, nothing run, so no ``--trust-checkpoint`` -- and checked entry by entry against the file.

Before session 20 such a file was refused as "not a PyTorch checkpoint or corrupt". Files written by the
``safetensors`` package itself (a test dependency only) read back bit for bit; ``spectrum`` gives the same CSV for
the same weights as a ``.pt`` state dict; every malformed header is one line.
"""

import json
import struct

import pytest
import torch
import torchvision

from svbench.checkpoint.load import load_checkpoint, read_safetensors
from svbench.cli.main import main
from svbench.errors import UserError


def _write(path, tensors, header_extra=None, raw_header=None):
    """A safetensors file by the format's definition (for the malformed cases the package would refuse to write)."""
    header, blobs, offset = {}, [], 0
    codes = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": codes[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header.update(header_extra or {})
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def test_files_of_the_safetensors_package_read_back_bit_for_bit(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in torchvision.models.resnet18(num_classes=10).state_dict().items()}
    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        tensors["empty"] = torch.zeros(0, 3)
        st.save_file(tensors, tmp_path / "m.safetensors", metadata={"format": "pt"})
        got, module = load_checkpoint(tmp_path / "m.safetensors")
        assert module is None and set(got) == set(tensors)
        assert all(got[k].dtype == v.dtype and torch.equal(got[k], v) for k, v in tensors.items()), dtype
    st.save_file({"module.conv.weight": torch.ones(2, 2, 3, 3)}, tmp_path / "dp.bin")  # any name: sniffed
    assert list(load_checkpoint(tmp_path / "dp.bin")[0]) == ["conv.weight"]  # DataParallel's prefix dropped


def test_spectrum_of_a_safetensors_checkpoint_is_the_state_dicts(tmp_path, capsys):
    torch.manual_seed(1)
    model = torchvision.models.resnet18(num_classes=10)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, tmp_path / "m.pt")
    _write(tmp_path / "m.safetensors", {k: v for k, v in state.items() if v.dtype in (torch.float32, torch.int64)})
    outs = []
    for f in ("m.pt", "m.safetensors"):
        code = main(["spectrum", str(tmp_path / f), "--model", "torchvision:resnet18", "--input-shape", "3,32,32",
                     "--no-progress", "--out", str(tmp_path / f.replace(".", "_"))])
        out = capsys.readouterr().out
        assert code == 0
        outs.append(((tmp_path / f.replace(".", "_") / "spectrum.csv").read_text(), out.split("L = ")[1].split()[0]))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("case, says", [
    ("short", "shorter than its 8-byte header length"),
    ("long header", "a header of"),
    ("not json", "its header is not JSON"),
    ("not object", "its header is not a JSON object"),
    ("no offsets", "tensor 'w': expected dtype, shape and data_offsets"),
    ("bad shape", "tensor 'w': expected dtype, shape and data_offsets"),
    ("bad dtype", "tensor 'w' has dtype 'F12'; svbench reads F64, F32"),
    ("past the end", "tensor 'w': bytes 0..4000 of 144 do not hold F32 [4, 3, 3]"),
    ("wrong size", "tensor 'w': bytes 0..140 of 144 do not hold F32 [4, 3, 3]"),
    ("no tensors", "holds no tensors"),
])
def test_malformed_safetensors_are_one_line(tmp_path, capsys, case, says):
    w = torch.ones(4, 3, 3)
    p = tmp_path / "m.safetensors"
    if case == "short":
        p.write_bytes(b"\x01\x02")
    elif case == "long header":
        p.write_bytes(struct.pack("<Q", 10**6) + b"{}")
    elif case == "not json":
        _write(p, {"w": w}, raw_header=b"{not json")
    elif case == "not object":
        _write(p, {"w": w}, raw_header=b"[1, 2]")
    elif case == "no offsets":
        _write(p, {"w": w}, raw_header=json.dumps({"w": {"dtype": "F32", "shape": [4, 3, 3]}}).encode())
    elif case == "bad shape":
        _write(p, {"w": w}, header_extra={"w": {"dtype": "F32", "shape": [4, -3], "data_offsets": [0, 144]}})
    elif case == "bad dtype":
        _write(p, {"w": w}, header_extra={"w": {"dtype": "F12", "shape": [4, 3, 3], "data_offsets": [0, 144]}})
    elif case == "past the end":
        _write(p, {"w": w}, header_extra={"w": {"dtype": "F32", "shape": [4, 3, 3], "data_offsets": [0, 4000]}})
    elif case == "wrong size":
        _write(p, {"w": w}, header_extra={"w": {"dtype": "F32", "shape": [4, 3, 3], "data_offsets": [0, 140]}})
    else:
        _write(p, {}, header_extra={"__metadata__": {"format": "pt"}})
    with pytest.raises(UserError) as e:
        read_safetensors(p) if case != "no tensors" else load_checkpoint(p)
    assert says in str(e.value) and "\n" not in str(e.value)
    code = main(["spectrum", str(p), "--input-size", "8", "--no-progress", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
