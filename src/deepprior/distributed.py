"""Fitting a folder on a Ray cluster: one Ray task per image.

This is the Ray executor of :func:`deepprior.batch.run` (see :mod:`deepprior.batch` for the
rest: which images, resume, failures, progress, summary).  The driver, where ``deepprior`` runs,
reads the images and writes the results; the workers only fit.  Each task gets one GPU when the
cluster has GPUs (and ``--device`` is not ``cpu``), else ``cpus_per_task`` CPUs, and pins torch to
that many threads (or to ``--threads``) so that its arithmetic, hence its result, does not depend
on the node it lands on.  Results come back through ``ray.wait`` as each task finishes.

Ray is an optional dependency (``pip install 'deepprior[ray]'``), imported only with ``--ray``.
Every node needs deepprior and the same torch installed.  Checkpoints (``--checkpoint-every``) and
snapshots (``--save-every``) are written by the workers, at the output paths: with more than one
node, those paths must be on a shared filesystem.
"""

from __future__ import annotations

import dataclasses
import logging

import ray

from .job import Settings, _as_json, compute_or_error, describe_error

__all__ = ["compute_on_ray"]

#: Tasks submitted ahead of the free slots, so that workers never wait for the driver.
AHEAD = 2


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: the one on this machine, or a new local one).

    Returns True when this call started Ray (and should shut it down).
    """
    if ray.is_initialized():
        return False
    ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False)
    return True


def compute_on_ray(pairs, settings: Settings, callbacks=(), *, address: str | None = None, cpus_per_task: int = 1):
    """The Ray executor: fit each image in its own Ray task; yield results as tasks finish.

    Parameters
    ----------
    pairs : iterator of (Job, Loaded)
        Read lazily: a few more than the cluster can run at once are in flight.
    settings : Settings
    callbacks : list
        Ignored: fits run in other processes (the progress is per image).
    address : str, optional
        The cluster (``ray.init(address=...)``): ``HOST:6379`` on a cluster node, ``ray://HOST:10001``
        from outside; None joins the cluster started on this machine with ``ray start``, or starts a
        local one.
    cpus_per_task : int
        CPUs reserved per task (and torch threads, unless ``settings.threads``) when there is no GPU.

    Yields
    ------
    (Job, Loaded, Computed or str)
    """
    started = _connect(address)
    pending: dict = {}
    try:
        resources = ray.cluster_resources()
        if resources.get("GPU", 0) >= 1 and settings.device != "cpu":
            # Ray shows each task its one GPU as cuda:0
            options, slots = {"num_gpus": 1, "num_cpus": 1}, int(resources["GPU"])
            task_settings = dataclasses.replace(settings, device="cuda", threads=settings.threads or 1)
        else:
            options, slots = {"num_cpus": cpus_per_task}, max(1, int(resources.get("CPU", 1) // cpus_per_task))
            task_settings = dataclasses.replace(settings, device="cpu", threads=settings.threads or cpus_per_task)
        task = ray.remote(compute_or_error).options(**options)
        pairs = iter(pairs)

        def submit() -> bool:
            for job, loaded in pairs:  # the next readable image, if any
                if settings.preset is None:  # the default for the workers' device (denoising: one fit or two)
                    preset = task_settings.preset_for(loaded.image, loaded.mask)
                    if preset != loaded.preset:
                        again = {"preset": preset.to_dict(), "stop": settings.stop_config(preset)}
                        loaded = dataclasses.replace(loaded, preset=preset,
                                                     fingerprint=dict(loaded.fingerprint, **_as_json(again)))
                pending[task.remote(job, loaded, task_settings)] = (job, loaded)
                return True
            return False

        while len(pending) < slots + AHEAD and submit():
            pass
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            job, loaded = pending.pop(ref)
            try:
                result = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - the worker died, was killed for memory, ...
                result = f"the Ray task failed: {describe_error(e)}"
            while len(pending) < slots + AHEAD and submit():
                pass
            yield job, loaded, result
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
