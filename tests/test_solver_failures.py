"""A batched solver that fails for some matrices of a batch (cuSOLVER gesvda through torch raises a LinAlgError
for the whole batch, naming the first failed element): those matrices go to the fallback, the rest is kept."""

import pytest
import torch

from svbench.functional.spectrum import checked_svdvals, first_isolating_failures

POISON = 777.0


def _batch(poisoned, b=12):
    a = torch.randn(b, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a[list(poisoned), 0, 0] = POISON
    return a


def _failing(log, name_element=True, svd=False):
    def first(x):
        log.append(("first", x.shape[0]))
        bad = (x[:, 0, 0] == POISON).nonzero().flatten()
        if bad.numel():
            where = f"(Batch element {int(bad[0])}): " if name_element else ""
            raise torch.linalg.LinAlgError(f"linalg.svd: {where}The algorithm failed to converge because the input "
                                           "matrix is ill-conditioned or has too many repeated singular values "
                                           "(error code: 100).")
        return torch.linalg.svd(x, full_matrices=False) if svd else torch.linalg.svdvals(x)
    return first


def _fallback(log, svd=False):
    def fallback(x):
        log.append(("fallback", x.shape[0]))
        return torch.linalg.svd(x, full_matrices=False) if svd else torch.linalg.svdvals(x)
    return fallback


@pytest.mark.parametrize("poisoned", [(), (0,), (5, 6), (0, 3, 11), tuple(range(12))])
@pytest.mark.parametrize("name_element", [True, False])
def test_failed_matrices_are_isolated_and_the_rest_kept(poisoned, name_element):
    a = _batch(poisoned)
    log = []
    got = first_isolating_failures(a, _failing(log, name_element), _fallback(log))
    assert torch.allclose(got, torch.linalg.svdvals(a), rtol=0, atol=1e-12)
    fallbacks = [n for kind, n in log if kind == "fallback"]
    assert fallbacks == [1] * len(poisoned)  # only the failed matrices, one by one
    if name_element:  # two more solver calls per failure at most
        assert sum(kind == "first" for kind, _ in log) <= 1 + 2 * len(poisoned)


def test_svd_tuples_are_put_back_in_order():
    a = _batch((2, 9))
    log = []
    u, s, vh = checked_svdvals(a, _failing(log, svd=True), _fallback(log, svd=True))
    assert torch.allclose(s, torch.linalg.svdvals(a), rtol=0, atol=1e-12)
    assert torch.allclose(u @ torch.diag_embed(s) @ vh, a, rtol=0, atol=1e-10)


def test_other_errors_are_not_swallowed():
    def broken(x):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        first_isolating_failures(_batch(()), broken, torch.linalg.svdvals)
