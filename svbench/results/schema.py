"""The results schema: one JSON record per (cell, metric) in ``results.jsonl``.

Numbers are numbers, fractions stay in [0, 1], units are in metric names. Every record carries the method and
its config, the shape or model, the seed, the device and versions, the thread count and the git SHA.

Record fields (all present in every record; ``null`` where not applicable):

=================  ==========================================================================================
schema_version     integer, this file's SCHEMA_VERSION
run_id             the run folder name, e.g. ``20261126-184500-1a2b``
suite              suite name
task               task name inside the suite; ``task_kind`` is ``sv`` or ``train``
cell_id            stable id of the (task, shape/model, method variant, seed) cell; used by ``--resume``
method             registered method name; ``method_label`` adds non-default config (``tt(rank_fraction=0.5)``)
method_config      the method's full config as a mapping
provides           all_svs | upper_bound | estimate | orthogonal_layer | none
backend            numerical route (svdvals, eigh, eigh64, gram_iteration, power_iteration, ...)
shape              layer geometry mapping (c_in, c_out, k, n, stride, padding, groups, dilation; width for an
                   n x width input; stride an int, or [s_height, s_width] when the axes differ) or null
seed               integer seed of the cell
metric             metric name (see METRICS); null for a record that only reports a status
value              number or null
unit               unit of value (ms, bytes, ratio, fraction, 1)
higher_is_better   bool
status             ok | skipped | oom | error | nonfinite
reason             why a cell was skipped or failed (one line), else null
iqr                interquartile range of value over repeats (timings), else null
repeats            number of timed repeats, else null
dtype              float32 | float64
oracle             how the reference SVs were obtained: dense_float64 | fft_float64 | none
extra              mapping of further details (peak-memory method, timing clock, ...)
timestamp          ISO 8601 UTC time the cell finished
device             cpu | cuda;  device_name: CPU model or GPU name
torch_version, cuda_version, python_version, svbench_version, git_sha
num_threads        torch intra-op threads during the run
tf32_matmul, tf32_cudnn   TF32 flags (matter for conv-based estimators on Ampere/Hopper)
malloc                    glibc allocator configuration the run's timings used (fix_allocator), or "default"
=================  ==========================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 1
# the fields every reader relies on; a record without one of them is rejected on load (with its line number).
# Paper baselines (baselines/papers/) carry these and a ``source`` but no run metadata.
CORE_FIELDS: tuple[str, ...] = ("schema_version", "suite", "task", "task_kind", "cell_id", "method", "method_label",
                                "metric", "value", "status")


@dataclass(frozen=True)
class MetricInfo:
    unit: str
    higher_is_better: bool
    description: str


METRICS: dict[str, MetricInfo] = {
    "sv_time_ms": MetricInfo("ms", False, "median wall time of the method's SV computation for one layer"),
    "sv_peak_mem_bytes": MetricInfo(
        "bytes", False, "peak extra memory of the SV computation (CUDA allocator; CPU: RSS high-water)"
    ),
    "sv_peak_mem_vs_transfer": MetricInfo(
        "ratio", False, "sv_peak_mem_bytes / size of the layer's rfft transfer matrices (issue-6 target: <= 1.5 on GPU)"
    ),
    "speedup_vs_reference_paired": MetricInfo(
        "ratio", True, "median over interleaved pairs of t_reference / t_method on the same kernel (paired_reference)"
    ),
    "sigma_max": MetricInfo("1", False, "sigma_max the method reports (exact, bound or estimate)"),
    "oracle_sigma_max": MetricInfo("1", False, "exact sigma_max of the implemented operator (oracle)"),
    "sigma_max_rel_err": MetricInfo(
        "ratio", False, "(method sigma_max - exact) / exact; >= 0 for bounds, <= 0 for estimates"
    ),
    "sv_max_abs_err_rel": MetricInfo(
        "ratio", False, "max over all SVs of |method - oracle| / oracle sigma_max (all-SV methods)"
    ),
    "forward_time_ms": MetricInfo("ms", False, "median wall time of the layer's forward at the task's batch"),
    "forward_vs_conv_paired": MetricInfo(
        "ratio", False, "median over interleaved pairs of t_forward / t_plain-conv forward, same input, eval mode "
        "(paired_forward; issue-6 Cayley target: <= 5 on GPU at batch 128)"
    ),
    "sv_profile_busy_ms": MetricInfo(
        "ms", False, "one profiled call of the SV computation (task option profile): self time summed on the device "
        "clock (CUDA kernels) or the host clock (CPU); extra.top = largest operators (on CUDA the kernels, named "
        "'kernel: ...', when the operators hold under half the busy time), extra.file = full table"
    ),
    # network task
    "network_sv_time_ms": MetricInfo("ms", False, "median time for all SVs (or bounds) of every conv of a model"),
    "network_peak_mem_bytes": MetricInfo("bytes", False, "peak extra memory of that computation"),
    "network_clip_time_ms": MetricInfo(
        "ms", False, "median time of one spectral-clipping pass over every conv (sedghi; reference: textbook route)"
    ),
    "network_clip_err_rel": MetricInfo(
        "ratio", False, "max over layers of ||K - K64||_F / ||K64||_F: the clipped kernels against the same "
        "clip-and-crop pass in float64 (check_error)"
    ),
    "network_profile_busy_ms": MetricInfo(
        "ms", False, "as sv_profile_busy_ms, for the network's all-SVs (or bounds) computation"
    ),
    "network_clip_profile_busy_ms": MetricInfo(
        "ms", False, "as sv_profile_busy_ms, for the network's clipping pass"
    ),
    "network_sigma_max": MetricInfo("1", False, "largest per-layer sigma_max found"),
    "network_max_err_rel": MetricInfo("ratio", False, "max over layers and SVs of |error| / layer sigma_max"),
    "network_min_bound_rel_err": MetricInfo("ratio", False, "min over layers of (bound - exact) / exact (>= 0)"),
    "network_max_est_rel_err": MetricInfo(
        "ratio", False, "max over layers of (estimate - exact) / exact (<= 0; extra.min_est_rel_err: the lowest)"
    ),
    # train task
    "test_accuracy": MetricInfo("fraction", True, "top-1 accuracy on the full test split, last epoch"),
    "val_accuracy_best": MetricInfo("fraction", True, "best validation accuracy over epochs (selection only)"),
    "ece": MetricInfo("fraction", False, "expected calibration error, 15 bins, torchmetrics on probabilities"),
    "nll": MetricInfo("nats", False, "test negative log-likelihood"),
    "brier": MetricInfo("1", False, "test Brier score (sum over classes, mean over points)"),
    "robust_accuracy": MetricInfo("fraction", True, "AutoAttack robust accuracy on the first n_examples"
                                  " (metric name robust_accuracy@NORM:EPS)"),
    "robust_accuracy_pgd": MetricInfo("fraction", True, "foolbox PGD robust accuracy (cross-check)"),
    "clean_accuracy_subset": MetricInfo("fraction", True, "clean accuracy on the attacked subset"),
    "lipschitz_bound": MetricInfo("1", False, "guaranteed l2 Lipschitz bound of the logits, composed from per-layer "
                                              "bounds along the model graph (pixel units)"),
    "certified_accuracy": MetricInfo("fraction", True, "fraction correct with margin/(sqrt(2) L) > eps"),
    "certificate_violations": MetricInfo("1", False, "successful attacks inside the certified l2 radius (must be 0;"
                                         " extra: checked, min_ratio; metric name certificate_violations@NORM:EPS)"),
    "layer_sigma_max": MetricInfo("1", False, "a conv's guaranteed sigma_max after the last control step"),
    "sigma_max_after": MetricInfo("1", False, "largest guaranteed conv sigma_max after training"),
    "overshoot_max": MetricInfo("ratio", False, "largest conv sigma_max / the method's target"),
    "train_time_s": MetricInfo("s", False, "total training wall time"),
    "epoch_time_s": MetricInfo("s", False, "mean wall time per epoch"),
    "control_time_s": MetricInfo("s", False, "time inside the method's control steps (after_step, without "
                                             "measuring the layers' sigma afterwards: the control's own cost)"),
    "nonfinite_steps": MetricInfo("1", False, "steps skipped because the loss was NaN or Inf"),
    "corruption_accuracy": MetricInfo("fraction", True, "mean accuracy over corruptions x 5 severities"),
    "checkpoint": MetricInfo("1", True, "path of the saved state dict (extra.path)"),
}


def metric_info(name: str) -> MetricInfo:
    """Info for a metric; ``certified_accuracy@36/255`` and friends share ``certified_accuracy``'s."""
    return METRICS.get(name) or METRICS.get(name.split("@")[0], MetricInfo("1", True, name))
