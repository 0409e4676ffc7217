"""deepprior.runtime: the allocator setting the CLI, the batch workers and the web app make."""

import platform
import sys

from deepprior.runtime import tune_allocator


def test_tune_allocator_takes_effect_on_glibc_linux_only_and_can_be_repeated():
    first, second = tune_allocator(), tune_allocator()
    assert first is second
    assert first is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_the_commands_settings_tune_the_allocator():
    from deepprior.job import Settings

    assert Settings(task="denoise").tune_allocator


def test_a_cpu_fits_memory_estimate_counts_what_the_tuned_allocator_keeps(monkeypatch):
    import torch

    import deepprior.runtime as runtime
    from deepprior.pipeline import restore
    from deepprior.presets import get_preset

    y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    seen = {}
    for tuned in (False, True):
        monkeypatch.setattr(runtime, "_tuned", [tuned])
        restore(y, get_preset("denoise-small").replace(iters=1), rng=0, device="cpu",
                announce=seen.setdefault(tuned, []).append)
    plain, tuned = seen[False][0], seen[True][0]
    assert tuned.bytes == int(plain.bytes * runtime.TUNED_MEMORY_FACTOR)
    assert tuned.gflop_per_step == plain.gflop_per_step
