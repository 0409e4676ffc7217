"""benchmarks/stopping.py: the offline scoring of a rule on recorded curves (no fitting)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import stopping  # noqa: E402


def _record(steps=300, peak=100, var_min=120):
    """A case whose raw PSNR peaks at ``peak`` and whose variance is lowest at ``var_min``."""
    raw = [30.0 - abs(s - peak) / 50 for s in range(1, steps + 1)]
    avg = [v + 0.5 for v in raw]
    var = [1.0 + abs(s - var_min) / 100 for s in range(1, steps + 1)]
    return {"raw": raw, "avg": avg, "steps": steps, "preset": "p",
            "variance": {"emv0.04": var}, "variance_steps": {"emv0.04": list(range(1, steps + 1))}}


def test_the_rule_stops_patience_after_the_variance_minimum_and_returns_the_image_there():
    rec = _record()
    rule = stopping.RuleConfig("emv0.04", 50, "avg-stop")
    got = stopping.evaluate(rec, rule, cap=300)
    assert got == {"stop": 170, "best": 120, "psnr": rec["avg"][169], "fired": True}
    fixed = stopping.evaluate(rec, None, cap=300)
    assert fixed["stop"] == 300 and fixed["psnr"] == rec["avg"][299]
    # a cap before the stop: the rule does not fire and the fit returns what it would anyway
    assert stopping.evaluate(rec, rule, cap=150) == {"stop": 150, "best": 150, "psnr": rec["avg"][149],
                                                     "fired": False}


def test_the_report_scores_against_the_default_count_and_the_quick_tiers():
    row = {"task": "t", "image": "i", "preset": "p", "rule": "emv0.04 p50 avg-stop", "oracle_psnr": 30.0,
           "oracle_step": 100}
    for prefix, count, stop in (("", 300, 170), ("quick_", 150, 150)):
        row.update({f"{prefix}rule_psnr": 29.9, f"{prefix}rule_stop": stop, f"{prefix}rule_best": stop,
                    f"{prefix}fired": prefix == "", f"{prefix}fixed_psnr": 28.0, f"{prefix}fixed_steps": count,
                    f"{prefix}gap_db": 0.1, f"{prefix}vs_fixed_db": 1.9,
                    f"{prefix}steps_saved": round(1 - stop / count, 3)})
    md = stopping.markdown([row], ["why"])
    assert "| t | i | emv0.04 p50 avg-stop | 30.00 @ 100 | 29.90 @ 170 | 28.00 @ 300 | +0.10 | +1.90 | 43 % |" in md
    assert "| all | +0.10 | +0.10 | +1.90 | +1.90 | 43 % |" in md  # against the default count
    assert "| all | +0.10 | +0.10 | +1.90 | +1.90 | 0 % |" in md  # against the quick tier's


def test_every_task_runs_at_least_to_its_default_count():
    for task in stopping.TASKS:
        assert task.run >= task.default >= task.fixed, task.name


def test_the_noise_gate_waits_for_the_smoothed_loss_to_reach_sigma_squared():
    rec = _record()
    rec["loss"] = [0.02 if s < 200 else 0.005 for s in range(1, 301)]  # 2 sigma^2, then half
    got = stopping.evaluate(rec, stopping.RuleConfig("emv0.04", 50, "avg-stop", gate=1.0), cap=300, sigma=0.1)
    smoothed = stopping.smoothed_loss(rec["loss"], 0.02)
    first_open = next(s for s in range(1, 301) if smoothed[s - 1] <= 0.01)
    assert 200 < first_open == got["stop"] < 300 and got["best"] == 120 and got["fired"]
    assert stopping.spec_of(stopping.RuleConfig("wmv50", 300, "avg-stop", 300, 1.0)) == \
        'StopSpec("wmv", 50, 300, "final", warmup=300, noise_gate=1)'


def test_the_jpeg_rule_stops_at_the_first_step_over_its_blockiness_limit():
    rec = _record()
    rec["blockiness_input"] = 2.0
    rec["blockiness"] = {"avg": [1.0 + s / 300 for s in range(1, 301)]}  # 1 -> 2 over the run
    rule = stopping.RuleConfig("blockiness-avg", 0, "avg-stop", 100, fraction=0.5)
    assert stopping.evaluate(rec, rule, cap=300) == {"stop": 150, "best": 150, "psnr": rec["avg"][149],
                                                     "fired": True}
    assert stopping.evaluate(rec, rule, cap=120)["fired"] is False
    early = stopping.RuleConfig("blockiness-avg", 0, "avg-stop", 100, fraction=0.1)
    assert stopping.evaluate(rec, early, cap=300)["stop"] == 100  # over the limit already: the warm-up's end
    assert stopping.spec_of(rule) == "BlockArtifacts(0.5, warmup=100)"
