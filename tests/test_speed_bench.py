"""benchmarks/speed.py: the report arithmetic and the channels_last variant's agreement (no timing)."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import speed  # noqa: E402


def _runs():
    return [
        {"size": 64, "variant": "eager", "seconds_per_step": 2.0, "flops_per_step": 8e9, "peak_memory_mib": 400.0},
        {"size": 64, "variant": "channels_last", "seconds_per_step": 1.0, "peak_memory_mib": 410.0,
         "max_abs_diff_vs_eager": 2e-5},
        {"size": 128, "variant": "eager", "error": "boom"},
    ]


def test_add_derived_fills_flops_rate_and_speedup():
    runs = _runs()
    speed.add_derived(runs, peak_gflops=100.0)
    assert runs[0]["achieved_gflops"] == pytest.approx(4.0)
    assert runs[1]["flops_per_step"] == 8e9  # taken from the baseline's count
    assert runs[1]["fraction_of_sgemm_peak"] == pytest.approx(0.08)
    assert runs[1]["speedup_vs_eager"] == pytest.approx(2.0)
    assert "achieved_gflops" not in runs[2]


def test_markdown_has_a_row_per_run_and_the_ttq_table():
    runs = _runs()
    speed.add_derived(runs, 100.0)
    result = {"meta": {"device": "cpu", "torch_threads": 1, "torch": "x", "commit": "abc", "machine": "m",
                       "steps": 2, "warmup": 1},
              "sgemm": {"n": 4096, "repeats": 5, "gflops": 100.0}, "runs": runs,
              "ttq": [{"preset": "denoise-small", "crop": 64, "target_db": 15.0, "cap_steps": 10, "reached": False,
                       "seconds_run": 3.0, "psnr_db_at_stop": 12.0}]}
    md = speed.markdown(result, tolerance=1e-4)
    assert "| 64 | channels_last | 8.0 | 1.000 | 8.0 | 8.0 | 2.00x | 410 | 2.0e-05 ok (tol 0.0001) |" in md
    assert "error: boom" in md
    assert "not reached within 10" in md
    result["meta"]["ttq_commit"] = "def"  # --ttq-only remeasured it later
    assert "measured at commit def (`python -m benchmarks.speed --ttq-only`)" in speed.markdown(result, tolerance=1e-4)


def test_ttq_only_needs_an_earlier_run(tmp_path):
    with pytest.raises(SystemExit, match="needs an earlier run"):
        speed.main(["--ttq-only", "--out", str(tmp_path / "none.json")])


def test_every_variant_matches_eager_on_one_forward():
    """Within its stated tolerance (fp32 variants: 1e-4; bf16: 0.1, where bf16 is native)."""
    import torch

    from deepprior.pipeline import bf16_native

    for name, variant in speed.VARIANTS.items():
        if name == speed.BASELINE or (variant.precision == "bf16" and not bf16_native(torch.device("cpu"))):
            continue
        tol = variant.tolerance if variant.tolerance is not None else 1e-4
        assert speed.max_output_diff(variant, 64, "cpu") <= tol, name


def test_profile_reports_the_convolutions_share_of_a_step():
    out = speed.profile(64, "channels_last", "cpu", steps=1)
    assert "aten::" in out and "64x64 channels_last:" in out and "convolutions" in out


def test_gpu_report_renders_the_committed_results():
    # benchmarks/gpu.py runs only on a CUDA machine; its report is rebuilt anywhere from the JSON
    from benchmarks import gpu

    out = ROOT / "benchmarks" / "results" / "gpu"
    if not (out / "gpu-target.json").exists():
        pytest.skip("no GPU results committed")
    text = gpu.report(out, [out / "2026-11-27-run4", out / "2026-11-26"])
    assert "#### Speed: `denoise-paper` network (cuda" in text and "cuda_graph" in text
    assert "512x512 target, this run" in text and "512x512 target, run 2026-11-26" in text
    assert "| in process, the preset's steps | denoise-sure@notf32 |" in text
    assert "Start-up" in text and "CUDA graph against eager" in text and "This run: `python -m benchmarks.gpu" in text


def test_gpu_script_runs_its_checks_on_the_cpu(tmp_path):
    # the same code paths as on a GPU, minus the CUDA-only graph check: a cheap dry run
    from benchmarks import gpu

    res = gpu.smoke(tmp_path, "cpu")
    assert res["all_ok"], [r for r in res["rows"] if not r["ok"]]


def test_gpu_scripts_tf32_candidates_leave_the_fit_as_it_was():
    # `NAME@tf32` measures a SURE fit as it ran before fitting._NoTF32, in that block only
    from benchmarks import gpu
    from deepprior import fitting

    before = fitting._NoTF32.__init__
    with gpu._sure_keeps_tf32():
        assert not fitting._NoTF32(True).active
    assert fitting._NoTF32.__init__ is before and fitting._NoTF32(True).active
