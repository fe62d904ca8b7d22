"""Concurrent lanes for solver calls (functional.lanes): same values as in order, errors and grads come through."""

import threading

import pytest
import torch
from test_network import _merge_layers

from svbench.errors import UserError
from svbench.functional import clip
from svbench.functional.lanes import assign_lanes, run_lanes
from svbench.functional.network import batched_conv_singular_values
from svbench.functional.spectrum import conv_singular_values
from svbench.methods import create_method


def test_assign_lanes_balances_by_cost_and_keeps_order():
    lanes = assign_lanes([5.0, 1.0, 1.0, 4.0, 2.0, 3.0], 2)
    assert sorted(i for lane in lanes for i in lane) == list(range(6))
    assert all(lane == sorted(lane) for lane in lanes)
    loads = sorted(sum([5.0, 1.0, 1.0, 4.0, 2.0, 3.0][i] for i in lane) for lane in lanes)
    assert loads == [8.0, 8.0]  # 5+2+1 and 4+3+1
    assert assign_lanes([1.0, 1.0], 4) == [[0], [1]]  # no empty lanes
    assert assign_lanes([], 3) == []


def test_run_lanes_uses_threads_and_returns_in_item_order():
    seen = set()

    def work(x):
        seen.add(threading.current_thread().name)
        return x * x

    assert run_lanes(list(range(7)), work, streams=3) == [x * x for x in range(7)]
    assert len(seen) == 3 and all(name.startswith("svbench-lane") for name in seen)
    assert run_lanes([2, 3], work, streams=1) == [4, 9]


def test_run_lanes_passes_errors_and_rejects_bad_stream_counts():
    def work(x):
        if x == 3:
            raise ValueError("boom at 3")
        return x

    with pytest.raises(ValueError, match="boom at 3"):
        run_lanes(list(range(6)), work, streams=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(UserError, match="streams must be an integer >= 1"):
            run_lanes([1, 2], lambda x: x, streams=bad)


def test_run_lanes_carries_grad_mode_and_autograd():
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    outs = run_lanes([1.0, 2.0, 3.0], lambda a: (a * w).square().sum(), streams=3)
    sum(outs).backward()
    assert torch.allclose(w.grad, 2 * 14.0 * w.detach())
    with torch.no_grad():
        assert not any(o.requires_grad for o in run_lanes([1.0, 2.0], lambda a: a * w, streams=2))


@pytest.mark.parametrize("merge", ["grids", "pad", "none"])
def test_network_svs_in_lanes_equal_in_order(merge):
    layers = _merge_layers()
    base = batched_conv_singular_values(layers, merge=merge)
    for streams in (2, 5):
        got = batched_conv_singular_values(layers, merge=merge, streams=streams)
        assert all(torch.equal(a, b) for a, b in zip(base, got)), streams
    chunked = batched_conv_singular_values(layers, merge=merge, chunk=3, streams=3)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(base, chunked))


@pytest.mark.parametrize("route", ["gram", "svd"])
def test_clip_pass_in_lanes_equals_in_order(route):
    layers = [(w, n, s, grp[0] if grp else 1, 1) for w, n, s, *grp in _merge_layers()]
    base = clip.clip_kernels(layers, 1.5, route=route)
    for streams, chunk in ((3, None), (2, 2)):
        got = clip.clip_kernels(layers, 1.5, route=route, streams=streams, chunk=chunk)
        for a, b in zip(base, got):
            assert torch.allclose(a, b, rtol=0, atol=1e-12), (streams, chunk)


def test_chunked_layer_in_lanes_equals_one_call():
    w = torch.randn(5, 4, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    one = conv_singular_values(w, 8, 2, chunk=10**6)
    lanes = conv_singular_values(w, 8, 2, chunk=3, streams=4)
    assert torch.allclose(one, lanes, rtol=0, atol=1e-12)


def test_methods_take_streams_and_validate_it():
    from test_network_fuzz import _random_net

    model, shape = _random_net(2)
    base = create_method("sedghi").network_svs(model, shape)
    got = create_method("sedghi", streams=3).network_svs(model, shape)
    assert all(torch.equal(base[k], got[k]) for k in base)
    base_clip = create_method("sedghi").network_clip(model, shape, 0.5)
    got_clip = create_method("sedghi", streams=3).network_clip(model, shape, 0.5)
    assert all(torch.allclose(base_clip[k], got_clip[k], rtol=0, atol=1e-12) for k in base_clip)
    for name in ("sedghi", "tt"):
        with pytest.raises(UserError, match="streams must be >= 1"):
            create_method(name, streams=0)


def test_split_for_lanes_covers_every_frequency_once_and_balances():
    from svbench.functional.batching import call_cost, plan_calls, split_for_lanes

    layers = [(w, n, s, grp[0] if grp else 1) for w, n, s, *grp in _merge_layers()]
    groups, calls = plan_calls(layers, lambda p, q, d: ("svdvals", "gesvda"), pieces=1)
    assert split_for_lanes(calls, 1) == calls
    split = split_for_lanes(calls, 4)
    assert len(calls) < len(split) <= len(calls) + 4
    for gr in groups:
        covered = sorted((p.a, p.b) for call in split for p in call if p.group is gr)
        edges = [a for a, _ in covered] + [covered[-1][1]]
        assert edges[0] == 0 and edges[-1] == gr.freqs.numel()
        assert all(b == a2 for (_, b), (a2, _) in zip(covered, covered[1:]))  # contiguous, no overlap
    assert max(map(call_cost, split)) < max(map(call_cost, calls))


@pytest.mark.parametrize("merge", ["grids", "pad"])
def test_split_calls_give_the_same_svs_and_clip(merge):
    layers = _merge_layers()
    base = batched_conv_singular_values(layers, merge=merge)
    got = batched_conv_singular_values(layers, merge=merge, streams=3, split=True)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(base, got))
    clip_layers = [(w, n, s, grp[0] if grp else 1, 1) for w, n, s, *grp in layers]
    base_k = clip.clip_kernels(clip_layers, 1.5, merge=merge)
    got_k = clip.clip_kernels(clip_layers, 1.5, merge=merge, streams=2, split=True)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(base_k, got_k))
    m = create_method("sedghi", split=True, streams=2)
    assert m.label == "sedghi(streams=2, split=True)"
