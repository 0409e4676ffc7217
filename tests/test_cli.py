"""The command line end to end on tiny images, and every bad input it must refuse."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepprior.cli import main

FAST = ["--preset", "denoise-small", "--iters", "3", "--seed", "0", "--quiet"]


@pytest.fixture()
def tiny(tmp_path):
    """A 37x31 RGB image (odd sizes catch padding bugs) and its folder."""
    rng = np.random.default_rng(0)
    arr = (rng.random((31, 37, 3)) * 255).astype(np.uint8)
    p = tmp_path / "photo.png"
    Image.fromarray(arr).save(p)
    return p


def run(*args):
    return main([str(a) for a in args])


def test_help_is_instant_and_does_not_import_torch():
    code = "import sys; from deepprior.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    r = subprocess.run([sys.executable, "-m", "deepprior", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "denoise" in r.stdout


def test_denoise_writes_image_sidecar_and_plot(tiny, tmp_path):
    ref = tiny  # any image of the right size serves as a reference here
    out = tmp_path / "out" / "clean.png"
    assert run("denoise", tiny, "-o", out, "--plot", "--reference", ref, "--save-every", "2", *FAST) == 0
    assert Image.open(out).size == (37, 31)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["complete"] and meta["iterations"] == 3 and meta["seed"] == 0
    assert meta["preset"]["name"] == "denoise-small" and meta["preset"]["iters"] == 3
    assert meta["versions"]["torch"] and meta["device"] == "cpu" or meta["device"].startswith(("cuda", "mps"))
    assert "psnr_reference" in meta["final"] and len(meta["curve"]["loss"]) == 3
    assert (out.parent / "clean_plot.png").is_file()
    assert (out.parent / "clean_steps" / "step_000002.png").is_file()


def test_default_output_name_and_output_folder(tiny, tmp_path):
    assert run("denoise", tiny, *FAST) == 0
    assert (tmp_path / "photo_denoised.png").is_file() and (tmp_path / "photo_denoised.json").is_file()
    folder = tmp_path / "results"
    folder.mkdir()
    assert run("deblock", tiny, "-o", folder, *FAST) == 0
    assert (folder / "photo_deblocked.png").is_file()
    # a name without an extension is a folder, created (as Real-ESRGAN's and IOPaint's -o)
    assert run("deblock", tiny, "-o", tmp_path / "new" / "out", *FAST) == 0
    assert (tmp_path / "new" / "out" / "photo_deblocked.png").is_file()


def test_the_header_and_estimate_come_before_the_progress_bar(capsys, tiny, tmp_path):
    assert run("denoise", tiny, "-o", tmp_path / "o.png", "--preset", "denoise-small", "--iters", "3") == 0
    err = capsys.readouterr().err
    assert err.startswith("deepprior denoise:"), err[:200]
    assert err.index("estimate:") < err.index("3/3")  # the bar's count


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_sr_output_is_scale_times_larger(tiny, tmp_path, scale):
    out = tmp_path / f"x{scale}.png"
    assert run("sr", tiny, "--scale", scale, "-o", out, "--preset", "denoise-small", "--iters", "1", "--quiet") == 0
    assert Image.open(out).size == (37 * scale, 31 * scale)


def test_inpaint_with_a_mask_file_and_the_keeps_convention(tiny, tmp_path):
    mask = np.zeros((31, 37), np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert run("inpaint", tiny, "--mask", tmp_path / "m.png", "-o", tmp_path / "a.png", *FAST) == 0
    Image.fromarray(255 - mask).save(tmp_path / "keeps.png")
    assert run("inpaint", tiny, "--mask", tmp_path / "keeps.png", "--mask-keeps", "--mask-dilate", "1",
               "-o", tmp_path / "b.png", *FAST) == 0
    assert Image.open(tmp_path / "b.png").size == (37, 31)


def test_the_default_inpainting_preset_follows_the_mask(tiny, tmp_path, capsys):
    from deepprior.masks import random_pixels_mask

    Image.fromarray(random_pixels_mask((31, 37), 0.5, rng=0).astype(np.uint8) * 255).save(tmp_path / "dots.png")
    assert run("inpaint", tiny, "--mask", tmp_path / "dots.png", "-o", tmp_path / "a.png", "--iters", "21") == 0
    err = capsys.readouterr().err
    assert "(preset inpaint-blindspot for scattered pixels or thin text, 21 steps" in err
    assert "for 21 steps" in err and "automatic stopping" not in err  # no rule for this preset: it runs them all
    assert json.loads((tmp_path / "a.json").read_text())["preset"]["name"] == "inpaint-blindspot"
    mask = np.zeros((31, 37), np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "hole.png")
    assert run("inpaint", tiny, "--mask", tmp_path / "hole.png", "-o", tmp_path / "b.png", "--iters", "1") == 0
    assert "(preset inpaint-text-paper for holes or thick strokes" in capsys.readouterr().err


def test_inpaint_rgba_without_mask_gives_an_opaque_result(tmp_path):
    arr = np.full((31, 37, 4), 200, np.uint8)
    arr[5:9, 5:9, 3] = 0
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    assert run("inpaint", tmp_path / "t.png", "-o", tmp_path / "o.png", *FAST) == 0
    assert Image.open(tmp_path / "o.png").mode == "RGB"


def test_16bit_in_16bit_out(tmp_path):
    arr = (np.random.default_rng(0).random((31, 37)) * 65535).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert run("denoise", tmp_path / "g16.png", "-o", tmp_path / "o16.png", *FAST) == 0
    from deepprior.io import read_image

    img, info = read_image(tmp_path / "o16.png")
    assert info.bits == 16 and img.shape == (31, 37, 1)


def test_degrade_commands(tiny, tmp_path):
    assert run("degrade", "noise", tiny, "-o", tmp_path / "n.png", "--sigma", "25", "--seed", "1") == 0
    a = np.asarray(Image.open(tmp_path / "n.png"))
    assert run("degrade", "noise", tiny, "-o", tmp_path / "n2.png", "--sigma", "25", "--seed", "1") == 0
    assert np.array_equal(a, np.asarray(Image.open(tmp_path / "n2.png")))  # reproducible by seed
    assert run("degrade", "jpeg", tiny, "-o", tmp_path / "j.png", "--quality", "10") == 0
    assert run("degrade", "downscale", tiny, "-o", tmp_path / "d.png", "--scale", "2") == 0
    assert Image.open(tmp_path / "d.png").size == (18, 15)
    for kind in ["text", "pixels", "hole", "strokes"]:
        assert run("degrade", "mask", tiny, "-o", tmp_path / f"{kind}.png", "--kind", kind) == 0
        m = np.asarray(Image.open(tmp_path / f"{kind}_mask.png"))
        assert m.shape == (31, 37) and 0 < (m > 127).mean() < 1
    assert run("degrade", "mask", tiny, "-o", tmp_path / "big.png", "--kind", "text", "--text-size", "20") == 0
    big = np.asarray(Image.open(tmp_path / "big_mask.png")) > 127
    assert big.mean() > 0 and not np.array_equal(big, np.asarray(Image.open(tmp_path / "text_mask.png")) > 127)
    for fraction in (0.1, 0.6):  # a hole of the area asked for (it once fell back to 0.1 from 0.5 up)
        assert run("degrade", "mask", tiny, "-o", tmp_path / f"h{fraction}.png", "--kind", "hole",
                   "--fraction", str(fraction)) == 0
        hole = np.asarray(Image.open(tmp_path / f"h{fraction}_mask.png")) > 127
        assert abs(hole.mean() - fraction) < 0.1
    assert run("degrade", "mask", tiny, "-o", tmp_path / "h.png", "--kind", "hole", "--fraction", "0.9") == 1


def test_presets_are_listed(capsys):
    assert run("presets") == 0
    out = capsys.readouterr().out
    for name in ["denoise-paper", "deblock-paper", "sr-x4-paper", "sr-x8-paper", "inpaint-text-paper",
                 "inpaint-hole-paper", "inpaint-pixels-paper", "origin-tutorial"]:
        assert name in out
    assert "denoise: denoise-sure-fast (denoise-sure-pair on a CUDA GPU) up to noise level 30" in out  # the defaults
    assert ("inpaint: inpaint-blindspot for scattered pixels, text and fine scratches, inpaint-blindspot-blocks for "
            "64 px text, inpaint-text-paper for holes") in out
    assert run("presets", "sr-x8-paper") == 0
    assert '"jitter": 0.05' in capsys.readouterr().out


# ------------------------------------------------------------------------------------------
# Bad input: one line on stderr, non-zero exit, nothing written
# ------------------------------------------------------------------------------------------


def _fails(capsys, folder, *args, match):
    before = set(Path(folder).rglob("*"))
    code = run(*args)
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.startswith("deepprior: error:") and "\n" not in err, err
    assert match in err, err
    assert set(Path(folder).rglob("*")) == before  # nothing written


def test_unreadable_file(capsys, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    _fails(capsys, tmp_path, "denoise", bad, *FAST, match="not a readable image")
    _fails(capsys, tmp_path, "denoise", tmp_path / "missing.png", *FAST, match="no such file")


def test_mask_of_the_wrong_size(capsys, tiny, tmp_path):
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "m.png")
    _fails(capsys, tmp_path, "inpaint", tiny, "--mask", tmp_path / "m.png", *FAST, match="same size")


def test_a_bad_mask_fails_before_the_fit_starts(capsys, tiny, tmp_path):
    """Without --quiet too: the one error line, no header and no progress bar before it."""
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "m.png")
    assert run("inpaint", tiny, "--mask", tmp_path / "m.png", "--iters", "2") != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepprior: error:") and "\n" not in err and "same size" in err, err


def test_empty_and_full_masks(capsys, tiny, tmp_path):
    Image.fromarray(np.zeros((31, 37), np.uint8)).save(tmp_path / "empty.png")
    _fails(capsys, tmp_path, "inpaint", tiny, "--mask", tmp_path / "empty.png", *FAST, match="no pixel to fill")
    Image.fromarray(np.full((31, 37), 255, np.uint8)).save(tmp_path / "full.png")
    _fails(capsys, tmp_path, "inpaint", tiny, "--mask", tmp_path / "full.png", *FAST, match="every pixel")


def test_unsupported_sr_factor(capsys, tiny, tmp_path):
    _fails(capsys, tmp_path, "sr", tiny, "--scale", "3", *FAST, match="2, 4 or 8")


def test_output_equal_to_input(capsys, tiny, tmp_path):
    _fails(capsys, tmp_path, "denoise", tiny, "-o", tiny, "--overwrite", *FAST, match="overwrite the input")


def test_existing_output_without_overwrite(capsys, tiny, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    _fails(capsys, tmp_path, "denoise", tiny, "-o", out, *FAST, match="--overwrite")
    assert out.read_bytes() == b"keep me"
    assert run("denoise", tiny, "-o", out, "--overwrite", *FAST) == 0


def test_an_output_never_replaces_the_mask_or_the_reference(capsys, tiny, tmp_path):
    """Not with --overwrite, and not with --resume (which may replace only an interrupted run's result)."""
    mask = tmp_path / "m.png"
    Image.fromarray(np.where(np.arange(37)[None, :] % 3 == 0, 255, 0).repeat(31, 0).astype(np.uint8)).save(mask)
    before = mask.read_bytes()
    for flag in ("--overwrite", "--resume"):
        _fails(capsys, tmp_path, "inpaint", tiny, "--mask", mask, "-o", mask, flag, *FAST, match="overwrite the mask")
        _fails(capsys, tmp_path, "denoise", tiny, "--reference", mask, "-o", mask, flag, *FAST,
               match="overwrite the reference")
    assert mask.read_bytes() == before


def test_resume_does_not_replace_a_file_no_run_of_ours_made(capsys, tiny, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")  # no sidecar, no checkpoint: not an interrupted run's result
    _fails(capsys, tmp_path, "denoise", tiny, "-o", out, "--resume", *FAST, match="--overwrite")
    assert out.read_bytes() == b"keep me"


def test_an_output_folder_that_cannot_be_made_fails_before_the_fit(capsys, tiny, tmp_path):
    (tmp_path / "afile").write_bytes(b"x")
    _fails(capsys, tmp_path, "denoise", tiny, "-o", str(tmp_path / "afile") + "/", *FAST, match="is not a folder")
    _fails(capsys, tmp_path, "denoise", tiny, "-o", tmp_path / "afile" / "o.png", *FAST, match="is not a folder")


def test_a_result_that_cannot_be_written_is_kept_elsewhere(monkeypatch, capsys, tiny, tmp_path):
    """The fit is done when its output turns out unwritable (a full disk, say): the result goes to
    a temporary folder, and the error line says where."""
    from deepprior import io as dio

    real = dio.write_image
    target = tmp_path / "o.png"

    def failing(path, *a, **k):
        if Path(path) == target:
            raise OSError(28, "No space left on device")
        return real(path, *a, **k)

    monkeypatch.setattr(dio, "write_image", failing)
    assert run("denoise", tiny, "-o", target, *FAST) != 0
    err = capsys.readouterr().err.strip()
    assert "No space left on device" in err and "the result was kept in" in err and "\n" not in err, err
    kept = Path(err.split("the result was kept in ")[1])
    assert Image.open(kept).size == (37, 31)


def test_an_empty_mask_is_refused_with_a_preset_and_tiles_too(capsys, tiny, tmp_path):
    Image.fromarray(np.zeros((31, 37), np.uint8)).save(tmp_path / "empty.png")
    _fails(capsys, tmp_path, "inpaint", tiny, "--mask", tmp_path / "empty.png", "--preset", "inpaint-small",
           "--tile", "16", "--tile-overlap", "4", "--time-budget", "5", "--iters", "3", "--quiet",
           match="no pixel to fill")


@pytest.mark.parametrize("flag,value", [("--lr", "0"), ("--lr", "nan"), ("--time-budget", "-1"),
                                        ("--time-budget", "nan"), ("--max-pixels", "0"), ("--iters", "0")])
def test_numbers_out_of_range(capsys, tiny, tmp_path, flag, value):
    args = [a for a in FAST if a not in ("--iters", "3")] + ([] if flag == "--iters" else ["--iters", "3"])
    _fails(capsys, tmp_path, "denoise", tiny, flag, value, *args, match=flag)


def test_an_image_too_large_to_decode(capsys, tmp_path):
    """A header claiming 20000x20000 pixels (Pillow's decompression-bomb limit): one line."""
    from helpers import bomb_png

    (tmp_path / "huge.png").write_bytes(bomb_png(20000, 20000))
    _fails(capsys, tmp_path, "denoise", tmp_path / "huge.png", *FAST, match="too large to read")


def test_an_unexpected_error_is_one_line_too(monkeypatch, capsys, tiny, tmp_path):
    import deepprior.job

    def boom(*a, **k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(deepprior.job, "compute", boom)
    assert run("denoise", tiny, "-o", tmp_path / "o.png", *FAST) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepprior: internal error: ZeroDivisionError") and "DEEPPRIOR_DEBUG" in err, err
    assert "\n" not in err


def test_image_over_the_size_limit(capsys, tiny, tmp_path):
    _fails(capsys, tmp_path, "sr", tiny, "--scale", "8", "--max-pixels", "1000", *FAST, match="--max-pixels")


def test_ctrl_c_writes_the_result_so_far_marked_interrupted(tiny, tmp_path):
    out = tmp_path / "o.png"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "deepprior", "denoise", str(tiny), "-o", str(out), "--preset", "denoise-small",
         "--iters", "100000", "--seed", "0", "--save-every", "1"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
    )
    try:
        deadline = time.time() + 120
        snaps = tmp_path / "o_steps"
        while not (snaps.is_dir() and len(list(snaps.glob("*.png"))) >= 2) and time.time() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["interrupted"] and not meta["complete"] and meta["iterations"] >= 2
    assert Image.open(out).size == (37, 31)


def test_out_of_memory_gives_an_actionable_one_line_hint(capsys, tiny, tmp_path, monkeypatch):
    import torch

    import deepprior.api

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore details")

    monkeypatch.setattr(deepprior.api, "run_task", oom)
    _fails(capsys, tmp_path, "denoise", tiny, *FAST, match="out of memory; try a smaller image")


def test_divergence_is_one_line_naming_the_learning_rate(capsys, tiny, tmp_path, monkeypatch):
    import deepprior.api
    from deepprior.fitting import DivergenceError

    def diverge(*a, **k):
        raise DivergenceError("the loss became non-finite at step 7 and backtracking did not recover; "
                              "lower the learning rate (now 0.01)")

    monkeypatch.setattr(deepprior.api, "run_task", diverge)
    _fails(capsys, tmp_path, "denoise", tiny, *FAST, match="learning rate")


def test_stop_rule_ends_the_fit_early_and_is_recorded(tiny, tmp_path):
    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, "--preset", "denoise-small", "--iters", "400", "--seed", "0", "--quiet",
               "--stop", "wmv", "--stop-window", "10", "--stop-patience", "10") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["stop_reason"] == "rule" and meta["iterations"] < 400
    assert meta["stop"] == {"rule": "wmv", "window": 10, "patience": 10}
    assert meta["stopped"]["stop_step"] == meta["iterations"]
    assert meta["stopped"]["best_step"] <= meta["stopped"]["stop_step"] and meta["stopped"]["reason"]
    assert Image.open(out).size == (37, 31)


def test_auto_stop_is_the_default_and_is_recorded(tiny, tmp_path):
    from deepprior.stopping import AUTO_STOP

    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, *FAST) == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    spec = AUTO_STOP["denoise"]
    assert meta["stop"] == {"rule": "auto", "window": None, "patience": None,
                            "auto": {"rule": spec.rule, "window": spec.window, "patience": spec.patience,
                                     "keep": spec.keep, "warmup": spec.warmup, "noise_gate": spec.noise_gate}}
    # 3 steps: far below the patience, so the cap (--iters) ends the fit
    assert meta["stop_reason"] == "iters" and meta["iterations"] == 3 and meta["stopped"]["stop_step"] is None


def test_a_known_noise_level_is_recorded_and_checked(tiny, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, *FAST, "--sigma", "25") == 0
    assert json.loads(out.with_suffix(".json").read_text())["stop"]["sigma"] == 25
    for bad in ("0", "300", "nan"):
        _fails(capsys, tmp_path, "denoise", tiny, "--sigma", bad, *FAST, match="--sigma")


def test_the_sure_preset_records_its_noise_level(tiny, tmp_path, capsys):
    sure = ["--preset", "denoise-sure", "--iters", "2", "--seed", "0", "--quiet"]
    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, *sure, "--sigma", "20") == 0
    assert json.loads(out.with_suffix(".json").read_text())["sure_sigma"] == 20
    assert run("denoise", tiny, "-o", tmp_path / "e.png", *sure) == 0  # estimated from the image
    assert json.loads((tmp_path / "e.json").read_text())["sure_sigma"] > 0
    _fails(capsys, tmp_path, "sr", tiny, "--scale", "2", *sure, match="denoising only")


def test_the_default_denoising_preset_says_the_noise_level_it_was_picked_for(tiny, tmp_path, capsys):
    # tiny is uniform noise: far above 30, so the paper recipe; --sigma 20 picks denoise-sure-fast
    assert run("denoise", tiny, "-o", tmp_path / "a.png", "--iters", "1", "--seed", "0") == 0
    assert "(preset denoise-paper for noise level ~" in capsys.readouterr().err
    assert run("denoise", tiny, "-o", tmp_path / "b.png", "--iters", "1", "--seed", "0", "--sigma", "20",
               "--device", "cpu") == 0  # (on a GPU: denoise-sure-pair)
    assert "(preset denoise-sure-fast for noise level 20 (given)" in capsys.readouterr().err
    assert json.loads((tmp_path / "b.json").read_text())["preset"]["name"] == "denoise-sure-fast"


def test_fits_averages_several_fits_and_is_refused_with_checkpoints(tiny, tmp_path, capsys):
    out = tmp_path / "f.png"
    assert run("denoise", tiny, "-o", out, "--preset", "denoise-small", "--iters", "3", "--fits", "2", "--seed", "0",
               "--stop", "fixed", "--quiet") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["preset"]["fits"] == 2 and meta["iterations"] == 6  # the steps of both
    _fails(capsys, tmp_path, "denoise", tiny, "-o", tmp_path / "g.png", "--fits", "0", match="--fits must be")
    _fails(capsys, tmp_path, "denoise", tiny, "-o", tmp_path / "h.png", "--preset", "denoise-sure-pair", "--sigma", "20",
           "--checkpoint-every", "2", match="cannot be checkpointed")


def test_auto_stop_without_a_rule_runs_the_presets_steps(tiny, tmp_path, capsys):
    # super-resolution has no automatic rule (the stopping benchmark found none that saved a step)
    from deepprior.stopping import AUTO_STOP

    assert AUTO_STOP["sr"] is None
    out = tmp_path / "o.png"
    assert run("sr", tiny, "--scale", "2", "-o", out, "--preset", "denoise-small", "--iters", "2", "--quiet") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["stop"]["auto"] is None and meta["iterations"] == 2
    _fails(capsys, tmp_path, "sr", tiny, "--scale", "2", "--stop-patience", "5", *FAST, match="--stop emv")


def test_fixed_stop_runs_exactly_the_steps(tiny, tmp_path):
    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, *FAST, "--stop", "fixed") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["stop"]["rule"] == "fixed" and meta["stopped"] == {} and meta["iterations"] == 3


def test_tiles_from_the_command_line(tiny, tmp_path, capsys):
    out = tmp_path / "o.png"
    assert run("denoise", tiny, "-o", out, *FAST, "--tile", "24", "--tile-overlap", "8") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert Image.open(out).size == (37, 31)
    assert meta["tile"] == {"size": 24, "overlap": 8} and meta["stop_reason"] == "tiles"
    assert len(meta["stopped"]["tiles"]) == 4 and meta["iterations"] == 4 * 3
    _fails(capsys, tmp_path, "denoise", tiny, *FAST, "--tile", "8", "--tile-overlap", "8", match="smaller than")


def test_tiled_inpainting_fits_only_the_tiles_with_something_to_fill(tiny, tmp_path, capsys):
    mask = np.zeros((31, 37), np.uint8)
    mask[2:6, 3:9] = 255  # in the top-left tile only (it used to fail: the other tiles' masks were empty)
    Image.fromarray(mask).save(tmp_path / "m.png")
    out = tmp_path / "o.png"
    assert run("inpaint", tiny, "--mask", tmp_path / "m.png", "-o", out, "--preset", "inpaint-small", "--iters", "2",
               "--tile", "24", "--tile-overlap", "8") == 0
    meta = json.loads(out.with_suffix(".json").read_text())
    assert Image.open(out).size == (37, 31) and meta["iterations"] == 2 and len(meta["stopped"]["tiles"]) == 1
    before, after = np.asarray(Image.open(tiny)), np.asarray(Image.open(out))
    assert np.array_equal(before[:, 24:, :3], after[:, 24:, :3])  # no tile there with something to fill


def test_snapshots_of_a_tiled_fit_are_the_whole_picture_over_all_the_tiles(tiny, tmp_path):
    out = tmp_path / "o.png"
    assert run("sr", tiny, "--scale", "2", "-o", out, "--preset", "sr-x4-small", "--iters", "2", "--seed", "0",
               "--tile", "24", "--tile-overlap", "8", "--save-every", "1", "--quiet") == 0
    snaps = sorted((tmp_path / "o_steps").glob("step_*.png"))
    tiles = len(json.loads(out.with_suffix(".json").read_text())["stopped"]["tiles"])
    assert tiles > 1 and [p.name for p in snaps] == [f"step_{i:06d}.png" for i in range(1, 2 * tiles + 1)]
    assert {Image.open(p).size for p in snaps} == {(74, 62)}  # the whole (upscaled) picture


def test_deblock_fast_fits_big_photos_in_its_tiles_unless_told_otherwise(tmp_path, capsys):
    from deepprior.io import write_image

    img = np.random.default_rng(0).random((40, 140, 3)).astype(np.float32)  # wider than deblock-fast's 128
    src = tmp_path / "wide.png"
    write_image(src, img)
    quick = ["--preset", "deblock-fast", "--iters", "2", "--seed", "0", "--quiet"]
    assert run("deblock", src, "-o", tmp_path / "tiled.png", *quick) == 0
    meta = json.loads((tmp_path / "tiled.json").read_text())
    assert meta["tile"] is None and len(meta["stopped"]["tiles"]) == 2  # the preset's tiles
    assert run("deblock", src, "-o", tmp_path / "whole.png", *quick, "--tile", "0") == 0
    meta = json.loads((tmp_path / "whole.json").read_text())
    assert meta["tile"] == 0 and "tiles" not in meta["stopped"]
    capsys.readouterr()
    assert run("deblock", src, "-o", tmp_path / "ck.png", *quick, "--checkpoint-every", "1") != 0
    assert "--tile 0" in capsys.readouterr().err


def test_out_of_memory_is_recognised_from_torch_and_numpy():
    """numpy's MemoryError ("Unable to allocate ...") gets the same hint as torch's allocators."""
    from deepprior.job import describe_error, is_oom

    for e in (MemoryError("Unable to allocate 3.00 GiB for an array with shape (20000, 20000, 2)"),
              RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
              RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes")):
        assert is_oom(e) and describe_error(e).startswith("out of memory; try a smaller image")
    assert not is_oom(ValueError("the mask marks no pixel to fill"))


def test_the_demo_refuses_a_step_count_below_one(capsys, tmp_path):
    _fails(capsys, tmp_path, "demo", "--iters", "0", "-o", tmp_path / "demo", match="--iters must be")


def test_a_long_fit_gets_a_hint_about_the_time_budget(capsys):
    from types import SimpleNamespace

    from deepprior.cli import _Progress

    def fit(progress, seconds_per_step):
        for step in (1, 2, 3):
            state = SimpleNamespace(elapsed=step * seconds_per_step, iters=1000, loss=0.1, psnr_measurement=20.0,
                                    average=None, psnr_reference=None, psnr_average_reference=None)
            progress(step, state)
        progress.close()
        return capsys.readouterr().err

    hint = "hint: --time-budget SECONDS"
    assert hint in fit(_Progress(1000, enabled=True, hint=True), 10.0)  # ~2.8 h
    assert hint not in fit(_Progress(1000, enabled=True), 10.0)  # a budget given (or demo, which has none)
    assert hint not in fit(_Progress(1000, enabled=True, hint=True), 0.5)  # ~8 min
    from deepprior.cli import QUICKER

    assert "--preset inpaint-blindspot-strokes is a quicker look at strokes" in fit(
        _Progress(1000, enabled=True, hint=True, quicker=QUICKER["inpaint-text-paper"]), 10.0)
