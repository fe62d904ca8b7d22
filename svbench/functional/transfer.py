"""Per-frequency transfer matrices of a 2-D convolution with circular padding.

Sedghi, Gupta & Long, "The Singular Values of Convolutional Layers", ICLR 2019 (arXiv:1805.10408): a circular conv
on an n x n grid is block-diagonalised by the 2-D DFT, so its singular values are the union over frequencies of
the singular values of the c_out x c_in matrices W_hat(w) = sum_{u,v} W[:, :, u, v] exp(-2 pi i (w1 u + w2 v) / n).
These results are EXACT for circular padding only (see methods.md section 1.2 for zero padding).

Stride s (s | n) uses the polyphase reshape: the stride-s conv on n equals a stride-1 conv on m = n / s applied to
the c_in * s^2 polyphase inputs, so each frequency has a c_out x (c_in * s^2) matrix. The phases go with the INPUT
channels; grouping them with the outputs (as the public TT code does for its cores) gives wrong values.

Kernels larger than the grid (k > n) are folded: taps are summed modulo n, which is the circular operator the
layer really applies. ``fft2(W, s=(n, n))`` would trim them instead, which is wrong.

Grids: ``n`` is an int (an n x n grid) or a pair (h, w) for a rectangular grid (e.g. a spectrogram CNN); the stride
is an int or a pair (s1, s2) too (a (1, 2) stride halves the width only). Everything above holds per axis:
m = (h / s1, w / s2) frequencies, c_in s1 s2 polyphase inputs, rfft along the width, phases
2 pi (w1 u / m1 + w2 v / m2). A square pair (n, n) or (s, s) is the int, so square grids and strides take exactly the
code (and values) they always did.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from svbench.errors import UserError

Grid = int | tuple[int, int]  # an n x n grid, or (height, width)
Stride = int | tuple[int, int]  # one stride for both axes, or (along the height, along the width)


def _pair(value: int | tuple[int, int], form: str) -> tuple[int, int]:
    """(along the height, along the width) of an int (both axes) or a pair; ``form`` names the two forms."""
    if not isinstance(value, tuple | list):
        return int(value), int(value)
    if len(value) != 2:
        raise UserError(f"a {form}; got {tuple(value)}")
    return int(value[0]), int(value[1])


def grid_hw(n: Grid) -> tuple[int, int]:
    """(height, width) of a grid given as an int or a pair."""
    return _pair(n, "grid is n or (height, width)")


def as_grid(n: Grid) -> Grid:
    """The canonical form of a grid: the int n for a square one, (h, w) otherwise (hashable, comparable)."""
    h, w = grid_hw(n)
    return h if h == w else (h, w)


def stride_hw(stride: Stride) -> tuple[int, int]:
    """(along the height, along the width) of a stride (or dilation) given as an int or a pair."""
    return _pair(stride, "stride is s or (s_height, s_width)")


def as_stride(stride: Stride) -> Stride:
    """The canonical form of a stride (or dilation): the int s when both axes agree, (s1, s2) otherwise."""
    s1, s2 = stride_hw(stride)
    return s1 if s1 == s2 else (s1, s2)


def stride_area(stride: Stride) -> int:
    """s1 s2: how many polyphase inputs one input channel gives."""
    s1, s2 = stride_hw(stride)
    return s1 * s2


def stride_text(stride: Stride) -> str:
    """``s`` for one stride on both axes, ``s1xs2`` otherwise (what tables and messages print)."""
    s1, s2 = stride_hw(stride)
    return str(s1) if s1 == s2 else f"{s1}x{s2}"


def grid_div(n: Grid, stride: Stride) -> Grid:
    """The grid of a stride-s conv's outputs (canonical): (h / s1, w / s2)."""
    h, w = grid_hw(n)
    s1, s2 = stride_hw(stride)
    return as_grid((h // s1, w // s2))


def grid_area(n: Grid) -> int:
    """h * w: how many grid points (frequencies)."""
    h, w = grid_hw(n)
    return h * w


def fits_grid(sizes: tuple[int, int] | torch.Size, n: Grid) -> bool:
    """Whether a kernel of (height, width) ``sizes`` (taps, or spans of a dilated kernel) fits the grid along each
    axis: what a clip-and-crop pass and the control steps need."""
    return all(int(k) <= side for k, side in zip(sizes, grid_hw(n)))


def grid_text(n: Grid) -> str:
    """``n`` for a square grid, ``HxW`` otherwise (what tables and messages print)."""
    h, w = grid_hw(n)
    return str(h) if h == w else f"{h}x{w}"


def fold_kernel(weight: Tensor, n: Grid) -> Tensor:
    """Zero-pad a (c_out, c_in, kh, kw) kernel to (c_out, c_in, h, w) (n x n for an int n), summing taps modulo the
    grid along an axis where the kernel is longer than it."""
    h, w = grid_hw(n)
    out = _fold_axis(_fold_axis(weight, h, 2), w, 3)
    return torch.nn.functional.pad(out, (0, w - out.shape[3], 0, h - out.shape[2]))


def _fold_axis(weight: Tensor, size: int, dim: int) -> Tensor:
    """Taps along ``dim`` summed modulo ``size`` when there are more than ``size`` of them (else unchanged)."""
    k = weight.shape[dim]
    if k <= size:
        return weight
    shape = list(weight.shape)
    shape[dim] = size
    idx = torch.arange(k, device=weight.device) % size
    return weight.new_zeros(shape).index_add_(dim, idx, weight)


def proxy_grid(n: Grid, stride: Stride, padding: str) -> Grid:
    """The grid a conv's circular model is taken on: its input grid n, except for a padded (zeros, reflect,
    replicate) conv whose stride does not divide n along an axis (torchvision's inception_v3: stride-2 convs on
    299 x 299 and 147 x 147), whose circular proxy is taken on n rounded up to a multiple of the stride per axis
    (the strided circular operator on n is defined for s | n only; the zero-padded layer on n is a restriction of
    the zero-padded layer on the larger grid, so a bound on n' of either grid holds it). A circular conv keeps n:
    its operator is the one on n, and a stride not dividing it is refused by :func:`check_circular_geometry`."""
    if padding == "circular":
        return n
    (h, w), (s1, s2) = grid_hw(n), stride_hw(stride)
    if h % s1 == 0 and w % s2 == 0:
        return n
    return as_grid((s1 * -(-h // s1), s2 * -(-w // s2)))


def check_circular_geometry(kernel_size: int, n: Grid, stride: Stride) -> None:
    """Raise a UserError if a circular conv of this geometry is not defined."""
    h, w = grid_hw(n)
    if min(h, w) < 1:
        raise UserError(f"input size must be positive, got {grid_text(n)}")
    s1, s2 = stride_hw(stride)
    if min(s1, s2) < 1:
        raise UserError(f"stride must be >= 1, got {stride_text(stride)}")
    square = h == w and s1 == s2
    for side, s, name in ((h, s1, "height"), (w, s2, "width")) if not square else ((h, s1, "size"),):
        if side % s:
            raise UserError(
                f"stride {s} does not divide the input {name} {side}; circular padding needs stride | n "
                f"(use {'n = ' if square else name + ' '}{s * -(-side // s)} or zero padding)"
            )


def polyphase_kernel(weight: Tensor, n: Grid, stride: Stride) -> Tensor:
    """(c_out, c_in, k, k) -> (c_out, c_in * s^2, n/s, n/s): stride-s conv on n == stride-1 conv on n/s (on an h x w
    grid with stride (s1, s2): (c_out, c_in s1 s2, h/s1, w/s2)).

    K'[o, (c, a, b), u', v'] = W_pad[o, c, s1 u' + a, s2 v' + b] with the phase (a, b) grouped with the input
    channel c (methods.md section 2).
    """
    check_circular_geometry(weight.shape[-1], n, stride)
    w = fold_kernel(weight, n)
    if stride == 1:
        return w
    c_out, c_in = w.shape[:2]
    m1, m2 = grid_hw(grid_div(n, stride))
    s1, s2 = stride_hw(stride)
    # w[o, c, s1*u + a, s2*v + b] -> [o, c, a, b, u, v]
    w = w.reshape(c_out, c_in, m1, s1, m2, s2).permute(0, 1, 3, 5, 2, 4)
    return w.reshape(c_out, c_in * s1 * s2, m1, m2)


def unpolyphase_kernel(kp: Tensor, c_in: int, stride: Stride) -> Tensor:
    """Inverse of :func:`polyphase_kernel` (without the folding): (c_out, c_in s1 s2, m1, m2) ->
    (c_out, c_in, m1 s1, m2 s2)."""
    if stride == 1:
        return kp
    c_out, _, m1, m2 = kp.shape
    s1, s2 = stride_hw(stride)
    w = kp.reshape(c_out, c_in, s1, s2, m1, m2).permute(0, 1, 4, 2, 5, 3)
    return w.reshape(c_out, c_in, m1 * s1, m2 * s2)


def transfer_matrices(weight: Tensor, n: Grid, stride: Stride = 1, *, real_fft: bool = True) -> Tensor:
    """Transfer matrices of the circular conv on an n x n (or h x w) input.

    Returns a complex tensor of shape (m, m_f, c_out, c_in * s^2) with m = n / s and m_f = m // 2 + 1 when
    ``real_fft`` (only the non-redundant half: W_hat(-w) = conj W_hat(w)) or m_f = m for the full FFT; on an
    h x w grid (h / s, (w / s) // 2 + 1, ...), resp. (h / s, w / s, ...).
    """
    if weight.dim() != 4:
        raise UserError(f"expected a 4-D conv kernel (out, in, kh, kw), got shape {tuple(weight.shape)}")
    kp = polyphase_kernel(weight, n, stride)
    m = tuple(kp.shape[-2:])
    spec = torch.fft.rfft2(kp, s=m) if real_fft else torch.fft.fft2(kp, s=m)
    return spec.permute(2, 3, 0, 1)


def compact_polyphase_kernel(weight: Tensor, n: Grid, stride: Stride) -> Tensor:
    """The polyphase kernel of :func:`polyphase_kernel` cut to its nonzero taps: (c_out, c_in s^2, t, t).

    For k <= n the taps of each phase lie in [0, ceil(k/s)), so nothing of size n^2 is built; for k > n the
    folded kernel fills the whole m x m grid and t = m. On a rectangular grid, or with a stride (s1, s2), the taps
    are (t1, t2), each axis cut (or folded) on its own.
    """
    check_circular_geometry(weight.shape[-1], n, stride)
    c_out, c_in, kh, kw = weight.shape
    n, stride = as_grid(n), as_stride(stride)
    if not isinstance(n, int) or not isinstance(stride, int):
        h, w_ = grid_hw(n)
        s1, s2 = stride_hw(stride)
        w = _fold_axis(_fold_axis(weight, h, 2), w_, 3)
        t1, t2 = -(-w.shape[2] // s1), -(-w.shape[3] // s2)
        w = torch.nn.functional.pad(w, (0, s2 * t2 - w.shape[3], 0, s1 * t1 - w.shape[2]))
        w = w.reshape(c_out, c_in, t1, s1, t2, s2).permute(0, 1, 3, 5, 2, 4)
        return w.reshape(c_out, c_in * s1 * s2, t1, t2)
    if kh > n or kw > n:
        return polyphase_kernel(weight, n, stride)
    t = -(-max(kh, kw) // stride)
    w = torch.nn.functional.pad(weight, (0, stride * t - kw, 0, stride * t - kh))
    if stride == 1:
        return w
    w = w.reshape(c_out, c_in, t, stride, t, stride).permute(0, 1, 3, 5, 2, 4)
    return w.reshape(c_out, c_in * stride * stride, t, t)


def frequency_free_columns(weight: Tensor, stride: Stride) -> Tensor | None:
    """For a kernel no larger than its stride (1 x 1 convs of any stride, a 2 x 2 kernel at stride 2, ...): the
    polyphase columns (c_in s1 s2 of them) its taps reach, else None. Structural (from the shape): no host sync."""
    kh, kw = weight.shape[-2:]
    s1, s2 = stride_hw(stride)
    if kh > s1 or kw > s2:
        return None
    keep = [ci * s1 * s2 + a * s2 + b for ci in range(weight.shape[1]) for a in range(kh) for b in range(kw)]
    return torch.tensor(keep, device=weight.device)


def frequency_free_matrix(weight: Tensor, n: Grid, stride: Stride) -> Tensor | None:
    """The one transfer matrix of a conv whose kernel is no larger than its stride, or None for other kernels.

    With at most one tap per phase the polyphase transfer matrix is the same at every frequency (no phase factor):
    the compact taps (c_out, c_in s^2). The columns of the phases the kernel does not reach (a >= kh or b >= kw)
    are zero and are dropped (``frequency_free_columns``): [A, 0] has A's SVs plus zeros, and clips to
    [clip(A), 0]. So the conv's SVs are those of ONE c_out x (c_in kh kw) matrix, each m^2 times (m = n / s),
    plus the zeros, and its Sedghi clip is that matrix's clip (nothing for the crop to cut). Exact.
    """
    cols = frequency_free_columns(weight, stride)
    if cols is None:
        return None
    taps = compact_polyphase_kernel(weight, n, stride)[:, :, 0, 0]  # validates the geometry
    return taps if stride == 1 else taps[:, cols]


def unique_frequency_taps(weight: Tensor, n: Grid, stride: Stride) -> tuple[Tensor, Grid, Tensor, Tensor]:
    """What every unique-frequency route starts from: (compact polyphase taps, m = n / s, flat rfft indices of one
    frequency per conjugate pair, how often each stands in the full spectrum). Validates the geometry."""
    taps = compact_polyphase_kernel(weight, n, stride)
    m = grid_div(n, stride)
    idx, mult = unique_frequencies(m, weight.device)
    return taps, m, idx, mult


def frequency_basis(m: Grid, taps: int | tuple[int, int], freq_idx: Tensor, dtype: torch.dtype, start: int = 0
                    ) -> tuple[Tensor, Tensor]:
    """cos and sin of 2 pi (w1 u + w2 v) / m for the flat rfft indices ``freq_idx`` and taps (u, v) in
    [start, start + taps)^2 (row-major; ``start`` < 0 for tap offsets); on an m1 x m2 grid with (t1, t2) taps
    2 pi (w1 u / m1 + w2 v / m2).

    Phases are reduced modulo m (m1 m2) in integers and evaluated in float64, then cast to ``dtype``, so the basis
    is correctly rounded whatever the precision of the kernel. Shapes (F, taps^2), resp. (F, t1 t2).
    """
    m1, m2 = grid_hw(m)
    t1, t2 = grid_hw(taps)
    mf = m2 // 2 + 1
    w1 = (freq_idx // mf).view(-1, 1, 1)
    w2 = (freq_idx % mf).view(-1, 1, 1)
    u = torch.arange(start, start + t1, device=freq_idx.device).view(1, -1, 1)
    v = torch.arange(start, start + t2, device=freq_idx.device).view(1, 1, -1)
    if m1 == m2:
        phase = ((w1 * u + w2 * v) % m1).reshape(freq_idx.numel(), -1).to(torch.float64) * (2 * math.pi / m1)
    else:  # w1 u / m1 + w2 v / m2 = (w1 u m2 + w2 v m1) / (m1 m2)
        period = m1 * m2
        phase = ((w1 * u * m2 + w2 * v * m1) % period).reshape(freq_idx.numel(), -1).to(torch.float64) * (
            2 * math.pi / period)
    return phase.cos().to(dtype), phase.sin().to(dtype)


def transfer_matrices_at(kernel_taps: Tensor, m: Grid, freq_idx: Tensor) -> Tensor:
    """Transfer matrices (F, c_out, c_in s^2) at chosen rfft frequencies by a direct DFT of the compact taps.

    ``kernel_taps`` is :func:`compact_polyphase_kernel`'s output, ``freq_idx`` flat indices into the (m, m//2+1)
    rfft grid (as :func:`unique_frequencies` gives). W_hat(w) = sum_{u,v} K[:, :, u, v] exp(-2 pi i (w1 u + w2 v)/m),
    the same values (and sign convention) as ``torch.fft.rfft2`` on the m x m grid, but only for the requested
    frequencies and with the matrices already contiguous: nothing of the size of the whole spectrum is built,
    which is what lets callers process the spectrum in chunks. Differentiable.
    """
    p, q, t1, t2 = kernel_taps.shape
    cos, sin = frequency_basis(m, (t1, t2), freq_idx, kernel_taps.dtype)
    flat = kernel_taps.permute(2, 3, 0, 1).reshape(t1 * t2, p * q)
    re_im = torch.cat([cos, -sin]) @ flat  # (2F, p q): one real matmul for both parts
    f = freq_idx.numel()
    return torch.complex(re_im[:f], re_im[f:]).view(f, p, q)


def rfft_multiplicity(m: Grid, device: torch.device | str | None = None) -> Tensor:
    """How often each rfft column stands in the full spectrum: 1 for w2 = 0 (and w2 = m/2, m even), else 2 (the
    columns run along the width: m2 of an m1 x m2 grid)."""
    m = grid_hw(m)[1]
    mf = m // 2 + 1
    mult = torch.full((mf,), 2, dtype=torch.long, device=device)
    mult[0] = 1
    if m % 2 == 0:
        mult[-1] = 1
    return mult


def unique_frequencies(m: Grid, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """Indices into the flattened (m, m//2+1) rfft grid of one representative per conjugate pair, and weights.

    W_hat(-w) = conj W_hat(w) has the same SVs. rfft keeps columns w2 in [0, m/2]; inside the columns w2 = 0 and
    w2 = m/2 (m even) the rows w1 and -w1 are still conjugate pairs, so only w1 in [0, m/2] is needed there. The
    weight of a representative is 2, except the self-conjugate (real) frequencies, which count once. On an
    m1 x m2 grid: rows w1 modulo m1, columns w2 in [0, m2/2] (the (m1, m2//2+1) rfft grid).
    """
    m1, m2 = grid_hw(m)
    mf = m2 // 2 + 1
    w1 = torch.arange(m1).view(-1, 1).expand(m1, mf)
    w2 = torch.arange(mf).view(1, -1).expand(m1, mf)
    boundary = (w2 == 0) | ((m2 % 2 == 0) & (w2 == m2 // 2))
    keep = ~boundary | (w1 <= m1 // 2)
    self_conj = boundary & ((w1 == 0) | ((m1 % 2 == 0) & (w1 == m1 // 2)))
    weight = torch.where(self_conj, 1, 2)
    flat = torch.nonzero(keep.reshape(-1)).squeeze(1)
    return flat.to(device), weight.reshape(-1)[flat].to(device)


def num_singular_values(c_in: int, c_out: int, n: Grid, stride: Stride) -> int:
    """Number of SVs of the circular operator, zeros included: (n/s)^2 * min(c_out, c_in s^2)
    ((h/s1) (w/s2) min(c_out, c_in s1 s2) in general)."""
    return grid_area(grid_div(n, stride)) * min(c_out, c_in * stride_area(stride))


def from_transfer_matrices(spec: Tensor, c_in: int, stride: Stride, n: Grid, *, real_fft: bool = True) -> Tensor:
    """Inverse FFT of transfer matrices (m, m_f, c_out, c_in s^2) back to an n x n real kernel (c_out, c_in, n, n)
    (h x w on a rectangular grid)."""
    m = grid_hw(grid_div(n, stride))
    kp_hat = spec.permute(2, 3, 0, 1)
    kp = torch.fft.irfft2(kp_hat, s=m) if real_fft else torch.fft.ifft2(kp_hat, s=m).real
    return unpolyphase_kernel(kp, c_in, stride)
