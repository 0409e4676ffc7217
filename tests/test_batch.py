"""Many images: folders, resume, checkpoints of single fits, and the same folder on a local Ray cluster."""

import io
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

FAST = ["--preset", "denoise-small", "--iters", "3", "--quiet"]


@pytest.fixture(autouse=True)
def one_thread():
    """Fits in this process on one thread (fast on a busy 2-core CI machine; ``--threads`` sets it
    too); torch's thread count is put back afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(*args):
    return main([str(a) for a in args])


def tiny(path, seed=0, shape=(31, 37, 3)):
    """A tiny random image (odd sizes catch padding bugs)."""
    arr = (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture()
def folder(tmp_path):
    """photos/ with 3 tiny images and a corrupt one."""
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(3):
        tiny(d / f"p{i}.png", seed=i)
    (d / "broken.png").write_text("not an image")
    return d


def pixels(path):
    return np.asarray(Image.open(path))


def sidecar(path):
    return json.loads(Path(path).with_suffix(".json").read_text())


def summary_line(err):
    return [line for line in err.splitlines() if line.startswith("deepprior: ") and " done, " in line][-1]


# ------------------------------------------------------------------------------------------
# Folders on one machine
# ------------------------------------------------------------------------------------------


def test_folder_with_a_corrupt_image_then_resume(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert run("denoise", folder, "-o", out, *FAST) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "broken.png" in err and "not a readable image" in err
    assert "3 done, 0 skipped, 1 failed of 4 images" in summary_line(err)
    results = sorted(p.name for p in out.glob("*.png"))
    assert results == ["p0_denoised.png", "p1_denoised.png", "p2_denoised.png"]
    for name in results:
        meta = sidecar(out / name)
        assert meta["complete"] and meta["seed"] == 0 and meta["iterations"] == 3  # seed 0 by default
        assert Image.open(out / name).size == (37, 31)
    before = {p: p.stat().st_mtime_ns for p in out.iterdir()}

    # the second run skips the three done ones (and fails the corrupt one again)
    assert run("denoise", folder, "-o", out, *FAST) == 1
    assert "0 done, 3 skipped, 1 failed" in summary_line(capsys.readouterr().err)
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == before

    # another setting is another result: redone; --overwrite redoes everything
    assert run("denoise", folder, "-o", out, *FAST, "--iters", "2") == 1
    assert "3 done, 0 skipped" in summary_line(capsys.readouterr().err)
    assert sidecar(out / "p0_denoised.png")["iterations"] == 2
    assert run("denoise", folder, "-o", out, *FAST, "--iters", "2", "--overwrite") == 1
    assert "3 done, 0 skipped" in summary_line(capsys.readouterr().err)


def test_folder_results_beside_the_inputs_are_not_inputs_next_time(folder, capsys):
    (folder / "broken.png").unlink()
    assert run("deblock", folder, *FAST) == 0
    assert sorted(p.name for p in folder.glob("*_deblocked.png")) == [f"p{i}_deblocked.png" for i in range(3)]
    capsys.readouterr()
    assert run("deblock", folder, *FAST) == 0
    assert "0 done, 3 skipped, 0 failed of 3 images" in summary_line(capsys.readouterr().err)
    assert not list(folder.glob("*_deblocked_deblocked*"))


def test_denoising_picks_each_images_preset_by_its_noise_level_and_resumes(tmp_path, capsys):
    """Without --preset each image gets the default for its estimated noise level (denoise-sure-fast up
    to 30 on a CPU, denoise-paper above), recorded in its sidecar; a rerun skips both, another --iters redoes both."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.2, 0.8, 37)[None, :, None] * np.ones((31, 37, 3))
    for name, sigma in [("low.png", 10), ("high.png", 60)]:
        noisy = np.clip(ramp + rng.normal(0, sigma / 255, ramp.shape), 0, 1)
        Image.fromarray((noisy * 255).round().astype(np.uint8)).save(inputs / name)
    assert run("denoise", inputs, "-o", out, "--iters", "3", "--quiet", "--device", "cpu") == 0
    low, high = sidecar(out / "low_denoised.png"), sidecar(out / "high_denoised.png")
    assert (low["preset"]["name"], high["preset"]["name"]) == ("denoise-sure-fast", "denoise-paper")
    assert low["preset"]["iters"] == high["preset"]["iters"] == 3 and low["sure_sigma"] < 30
    # SURE runs its steps, guarded against its collapse; paper: the task's rule
    assert low["stop"]["auto"] == {"rule": "DataTermRise"} and high["stop"]["auto"]["rule"] == "emv"
    capsys.readouterr()
    assert run("denoise", inputs, "-o", out, "--iters", "3", "--quiet", "--device", "cpu") == 0
    assert "0 done, 2 skipped, 0 failed of 2 images" in summary_line(capsys.readouterr().err)
    assert run("denoise", inputs, "-o", out, "--iters", "4", "--quiet", "--device", "cpu") == 0
    assert "2 done, 0 skipped, 0 failed of 2 images" in summary_line(capsys.readouterr().err)


def test_glob_and_output_naming_errors(folder, tmp_path, capsys):
    assert run("denoise", str(folder / "p[01].png"), "-o", tmp_path / "g", *FAST) == 0
    assert sorted(p.name for p in (tmp_path / "g").glob("*.png")) == ["p0_denoised.png", "p1_denoised.png"]
    capsys.readouterr()
    assert run("denoise", folder, "-o", tmp_path / "one.png", *FAST) == 1
    assert "-o must be a folder" in capsys.readouterr().err
    assert run("denoise", folder, "--reference", folder / "p0.png", *FAST) == 1
    assert "give a folder of ground truths" in capsys.readouterr().err
    tiny(folder / "p0.jpg")
    assert run("denoise", folder, "-o", tmp_path / "h", *FAST) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("deepprior: error:") and "would both write" in err and "\n" not in err
    assert run("denoise", str(tmp_path / "none" / "*.png"), *FAST) == 1
    assert "no images found" in capsys.readouterr().err


def test_a_folder_run_neither_overwrites_a_mask_nor_starts_without_a_place_for_its_results(folder, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    mask = out / "p0_inpainted.png"  # where p0's result would go
    Image.fromarray(np.where(np.arange(37)[None, :] % 3 == 0, 255, 0).repeat(31, 0).astype(np.uint8)).save(mask)
    before = mask.read_bytes()
    assert run("inpaint", folder, "--mask", mask, "-o", out, "--overwrite", *FAST) == 1
    err = capsys.readouterr().err.strip()
    assert "would overwrite a mask" in err and "\n" not in err, err
    assert mask.read_bytes() == before
    (tmp_path / "afile").write_bytes(b"x")
    assert run("denoise", folder, "-o", tmp_path / "afile" / "sub", *FAST) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert not list(folder.glob("*_denoised*"))


def test_inpaint_masks_by_stem_folder_or_one_file(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    mask = np.zeros((31, 37), np.uint8)
    mask[10:20, 5:30] = 255
    for stem in ["a", "b"]:
        tiny(d / f"{stem}.png")
        Image.fromarray(mask).save(d / f"{stem}_mask.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(d / "b_mask.png")  # the wrong size
    rgba = np.full((31, 37, 4), 200, np.uint8)
    rgba[5:9, 5:9, 3] = 0
    Image.fromarray(rgba, "RGBA").save(d / "c.png")  # no mask: its transparent pixels
    assert run("inpaint", d, "-o", tmp_path / "o1", *FAST) == 1
    err = capsys.readouterr().err
    assert "2 done, 0 skipped, 1 failed of 3 images" in summary_line(err) and "same size" in err
    assert sorted(p.name for p in (tmp_path / "o1").glob("*.png")) == ["a_inpainted.png", "c_inpainted.png"]
    assert sidecar(tmp_path / "o1" / "a_inpainted.png")["mask"] == str(d / "a_mask.png")

    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(mask).save(masks / "a.png")
    Image.fromarray(mask).save(masks / "b.png")
    assert run("inpaint", d, "--mask", masks, "-o", tmp_path / "o2", *FAST) == 1  # no masks/c.*
    err = capsys.readouterr().err
    assert "2 done" in summary_line(err) and str(masks / "c.*") in err and "no such file" in err
    assert run("inpaint", d, "--mask", masks / "a.png", "-o", tmp_path / "o3", *FAST) == 0  # one for all
    assert sorted(p.name for p in (tmp_path / "o3").glob("*.png")) == ["a_inpainted.png", "b_inpainted.png",
                                                                      "c_inpainted.png"]


def _deepprior(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "deepprior", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc, ready, timeout=120):
    """SIGKILL ``proc`` as soon as ``ready()`` is true."""
    try:
        deadline = time.time() + timeout
        while not ready() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_killed_folder_run_resumes_without_rework_or_truncated_files(folder, tmp_path, capsys):
    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    args = ["denoise", folder, "-o", out, "--preset", "denoise-small", "--iters", "40", "--threads", "1", "--quiet"]
    proc = _deepprior(*args)
    _kill_when(proc, lambda: any(out.glob("*.json")))
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finished = {p: p.stat().st_mtime_ns for p in out.glob("*.png")
                if p.with_suffix(".json").is_file() and sidecar(p)["complete"]}
    assert 1 <= len(finished) < 3
    for p in out.glob("*.png"):  # nothing half-written (a temporary file may remain; it is hidden)
        Image.open(p).load()
    assert run(*args) == 0
    err = capsys.readouterr().err
    assert f"{3 - len(finished)} done, {len(finished)} skipped, 0 failed" in summary_line(err)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert all(sidecar(out / f"p{i}_denoised.png")["complete"] for i in range(3))


# ------------------------------------------------------------------------------------------
# Checkpoints of a single fit
# ------------------------------------------------------------------------------------------


def _keeper():
    """A checkpoint callback that serialises every state it gets: ({step: bytes}, callback)."""
    import torch

    saved = {}

    def keep(state):
        buf = io.BytesIO()
        torch.save(state, buf)
        saved[state["step"]] = buf.getvalue()

    return saved, keep


@pytest.mark.parametrize("preset,scale", [("denoise-small", 1), ("sr-x4-small", 2), ("inpaint-blindspot", 1)])
def test_fit_resumed_from_a_checkpoint_equals_the_uninterrupted_fit(preset, scale):
    """In process: save the state every 3 steps (through bytes), rebuild everything, resume."""
    import torch

    from deepprior.pipeline import restore
    from deepprior.presets import get_preset

    p = get_preset(preset).replace(iters=8)  # sr: no averaging, the output is net(z) after the loop
    y = torch.from_numpy(np.random.default_rng(0).random((1, 3, 31, 37)).astype(np.float32))
    # inpainting (a blind-spot fit: its hidden pixels are drawn from the saved generator too)
    known = torch.from_numpy(np.random.default_rng(1).random((1, 1, 31, 37)) < 0.5)
    kw = {"known": known} if p.task == "inpaint" else {}
    saved, keep = _keeper()

    full = restore(y, p, scale=scale, rng=5, device="cpu", checkpoint=keep, checkpoint_every=3, **kw)
    assert sorted(saved) == [3, 6]
    for step, data in saved.items():
        state = torch.load(io.BytesIO(data), weights_only=True)
        resumed = restore(y, p, scale=scale, rng=5, device="cpu", resume=state, **kw)
        assert resumed.fit.resumed_from == step and resumed.fit.steps == 8
        assert torch.equal(resumed.image, full.image)
        assert resumed.fit.history["loss"] == full.fit.history["loss"]


def test_a_stopping_rule_resumes_from_a_checkpoint_as_if_uninterrupted():
    """The rule's state travels in the checkpoint: the resumed fit stops at the same step with the
    same selected iterate."""
    import torch

    from deepprior.pipeline import restore
    from deepprior.presets import get_preset
    from deepprior.stopping import WindowedVariance

    p = get_preset("denoise-small").replace(iters=300)
    y = torch.from_numpy(np.random.default_rng(1).random((1, 3, 31, 37)).astype(np.float32))
    saved, keep = _keeper()

    rule = WindowedVariance(8, 8, keep="result")
    full = restore(y, p, rng=5, device="cpu", stop=rule, checkpoint=keep, checkpoint_every=10)
    assert full.fit.stop_reason == "rule" and rule.stop_step < 300 and saved
    step = max(saved)
    again = WindowedVariance(8, 8, keep="result")
    resumed = restore(y, p, rng=5, device="cpu", stop=again,
                      resume=torch.load(io.BytesIO(saved[step]), weights_only=True))
    assert resumed.fit.resumed_from == step
    assert (again.stop_step, again.best_step) == (rule.stop_step, rule.best_step)
    assert torch.equal(resumed.image, full.image)


def test_killed_fit_resumes_from_its_checkpoint_with_the_same_pixels(tmp_path, capsys):
    src = tiny(tmp_path / "photo.png")
    out = tmp_path / "a.png"
    args = ["denoise", src, "-o", out, "--preset", "denoise-small", "--iters", "100", "--seed", "3",
            "--threads", "1", "--quiet"]
    ckpt = tmp_path / "a.ckpt.pt"
    proc = _deepprior(*args, "--checkpoint-every", "5")
    _kill_when(proc, ckpt.is_file)
    assert proc.returncode == -signal.SIGKILL and ckpt.is_file() and not out.exists()

    assert run(*args) == 1  # a checkpoint is never silently thrown away
    err = capsys.readouterr().err.strip()
    assert "--resume" in err and "\n" not in err
    assert run(*args, "--checkpoint-every", "5", "--resume") == 0
    meta = sidecar(out)
    assert meta["complete"] and meta["iterations"] == 100 and meta["resumed_from"] >= 5
    assert not ckpt.exists()  # removed once the result is complete

    assert run(*args[:3], tmp_path / "b.png", *args[4:]) == 0  # the same seed, never interrupted
    assert np.array_equal(pixels(out), pixels(tmp_path / "b.png"))
    assert meta["final"] == sidecar(tmp_path / "b.png")["final"]  # the same loss, to the last bit
    assert meta["curve"] == sidecar(tmp_path / "b.png")["curve"]


# ------------------------------------------------------------------------------------------
# The same folder on a local Ray cluster
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs in this process (``--ray`` then uses it)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):  # the test extra installs Ray: in CI its absence is a failure
            pytest.fail("ray is not installed (pip install -e '.[test]')")
        pytest.skip("ray is not installed")
    # address="local": a new cluster, even where `ray start` left one (or its address file) behind
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_images_as_a_local_run(ray_cluster, folder, tmp_path, capsys):
    # one thread per fit in both: the thread count changes float sums, hence the pixels
    assert run("denoise", folder, "-o", tmp_path / "local", *FAST, "--threads", "1") == 1
    capsys.readouterr()
    assert run("denoise", folder, "-o", tmp_path / "ray", *FAST, "--ray", "--ray-cpus", "1") == 1
    err = capsys.readouterr().err
    assert "3 done, 0 skipped, 1 failed of 4 images" in summary_line(err) and "broken.png" in err
    for i in range(3):
        name = f"p{i}_denoised.png"
        assert np.array_equal(pixels(tmp_path / "local" / name), pixels(tmp_path / "ray" / name))  # tolerance 0
        here, there = sidecar(tmp_path / "local" / name), sidecar(tmp_path / "ray" / name)
        assert here["final"] == there["final"] and there["versions"]["threads"] == 1 and there["seed"] == 0
    assert run("denoise", folder, "-o", tmp_path / "ray", *FAST, "--ray", "--ray-cpus", "1") == 1
    assert "0 done, 3 skipped, 1 failed" in summary_line(capsys.readouterr().err)


def test_a_result_recorded_before_a_preset_field_was_added_is_still_done(folder, tmp_path, capsys):
    """A sidecar written before a field was added to Preset (or its network) ran with that field's
    default: resume skips it rather than redoing it."""
    import json

    (folder / "broken.png").unlink()
    out = tmp_path / "out"
    assert run("denoise", folder, "-o", out, *FAST) == 0
    for path in out.glob("*.json"):  # as an older version wrote them
        meta = json.loads(path.read_text())
        del meta["preset"]["blindspot_shape"], meta["preset"]["network"]["dropout"]
        path.write_text(json.dumps(meta))
    capsys.readouterr()
    assert run("denoise", folder, "-o", out, *FAST) == 0
    assert "0 done, 3 skipped, 0 failed of 3 images" in summary_line(capsys.readouterr().err)
    for path in out.glob("*.json"):  # a field recorded with another value is another recipe
        meta = json.loads(path.read_text())
        meta["preset"]["network"]["dropout"] = 0.5
        path.write_text(json.dumps(meta))
    assert run("denoise", folder, "-o", out, *FAST) == 0
    assert "3 done, 0 skipped" in summary_line(capsys.readouterr().err)


def test_denoisings_gpu_default_is_one_fit_where_the_run_checkpoints():
    """On CUDA the default averages two fits (denoise-sure-pair); checkpoints are per fit, so a
    checkpointed or resumed run gets it as one fit, and counts that among its candidates."""
    from deepprior.job import Settings

    rng = np.random.default_rng(0)
    ramp = np.linspace(0.2, 0.8, 40)[None, :, None] * np.ones((36, 40, 3))
    noisy = np.clip(ramp + rng.normal(0, 10 / 255, ramp.shape), 0, 1).astype(np.float32)
    plain, kept = Settings(task="denoise", device="cuda"), Settings(task="denoise", device="cuda", checkpoint_every=5)
    assert (plain.preset_for(noisy).name, plain.preset_for(noisy).fits) == ("denoise-sure-pair", 2)
    assert (kept.preset_for(noisy).name, kept.preset_for(noisy).fits) == ("denoise-sure-pair", 1)
    assert kept.preset_for(noisy) in kept.candidates()
    assert Settings(task="denoise", device="cpu").preset_for(noisy).name == "denoise-sure-fast"
