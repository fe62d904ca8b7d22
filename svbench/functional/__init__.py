"""Pure tensor maths, no nn.Module state: transfer matrices, exact SVs, the dense oracle, clipping, TT algebra."""

from svbench.functional.clip import ClipResult, clip_spectrum, sedghi_clip
from svbench.functional.oracle import dense_operator, oracle_singular_values
from svbench.functional.spectrum import (
    BACKENDS,
    conv_sigma_max,
    conv_singular_values,
    frequency_singular_values,
    matrix_singular_values,
    zero_padding_bound_size,
    zero_padding_sigma_max_bound,
)
from svbench.functional.transfer import (
    fold_kernel,
    num_singular_values,
    polyphase_kernel,
    rfft_multiplicity,
    transfer_matrices,
)
from svbench.functional.tt import compose_kernel, fold_cores, orthogonality_defect, tt_svd

__all__ = [
    "BACKENDS", "ClipResult", "clip_spectrum", "compose_kernel", "conv_sigma_max", "conv_singular_values",
    "dense_operator", "fold_cores", "fold_kernel", "frequency_singular_values", "matrix_singular_values",
    "num_singular_values", "oracle_singular_values", "orthogonality_defect", "polyphase_kernel",
    "rfft_multiplicity", "sedghi_clip", "transfer_matrices", "tt_svd", "zero_padding_bound_size",
    "zero_padding_sigma_max_bound",
]
