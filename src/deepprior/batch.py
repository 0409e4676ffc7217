"""Many images: a folder or a glob in, one result and one sidecar per image out.

The whole story, as :func:`deepprior.cli.cmd_task` tells it::

    jobs = plan("photos/", task="denoise", ...)   # which images, their masks, where results go
    summary = run(jobs, settings)                 # skip the done ones, fit the rest, report

:func:`run` skips every image whose sidecar says it is complete with this run's settings (see
:func:`deepprior.job.is_done`), reads the others one at a time, hands them to an *executor* that
fits them, and writes each result as soon as it comes back.  A failure is one line and a count;
the other images go on.  The executor is the only part that differs between this machine and a
Ray cluster: it takes an iterator of ``(job, loaded)`` pairs and yields ``(job, loaded, result)``
as fits finish, ``result`` being a :class:`deepprior.job.Computed` or a one-line error message.
:func:`compute_here` fits in this process, one image after the other;
:func:`deepprior.distributed.compute_on_ray` sends one Ray task per image.
"""

from __future__ import annotations

import glob
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .io import IMAGE_SUFFIXES
from .job import (Job, Settings, compute_or_error, describe_error, is_done, load, output_path, output_problem,
                  read_sidecar, save)

__all__ = ["PlanError", "collect", "make_job", "plan", "run", "compute_here", "Summary"]

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130


class PlanError(ValueError):
    """A problem with the set of inputs as a whole (reported before any fit starts)."""


# ----------------------------------------------------------------------------------------------
# Planning: inputs, masks, outputs
# ----------------------------------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def collect(spec: str) -> list[Path] | None:
    """The images named by ``spec``: a folder (its images, not recursing) or a glob, sorted.

    Returns None when ``spec`` is neither (a single file, which may not exist).  Hidden files
    (such as the temporary files of atomic writes) are never inputs.
    """
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if _is_image(p))
    if not path.exists() and glob.has_magic(spec):
        return sorted(p for p in map(Path, glob.glob(spec, recursive=True)) if _is_image(p))
    return None


class _Listing:
    """Files of folders by stem, each folder listed once (mask and reference look-ups)."""

    def __init__(self):
        self._by_folder: dict[Path, dict[str, list[Path]]] = {}

    def find(self, folder: Path, stem: str, exclude: Path | None = None) -> Path | None:
        if folder not in self._by_folder:
            by_stem: dict[str, list[Path]] = {}
            for p in sorted(folder.iterdir()) if folder.is_dir() else []:
                if _is_image(p):
                    by_stem.setdefault(p.stem, []).append(p)
            self._by_folder[folder] = by_stem
        hits = [p for p in self._by_folder[folder].get(stem, []) if p != exclude]
        return hits[0] if hits else None


def make_job(inp: Path, *, task: str, scale: int | None = None, output: str | None = None,
             mask: str | None = None, reference: str | None = None, listing: _Listing | None = None) -> Job:
    """The :class:`~deepprior.job.Job` of one input.

    Parameters
    ----------
    inp : Path
        The image.
    task, scale : str, int
        The task command (and its scale, for ``sr``): they name the output.
    output : str, optional
        A folder (existing, or ending with ``/``) or a file; default: beside the input.
    mask : str, optional
        ``inpaint`` only.  A file (for every input) or a folder holding ``<stem>_mask.*`` or
        ``<stem>.*``; default: ``<stem>_mask.*`` beside the input if there is one (else the
        input's transparent pixels are filled).
    reference : str, optional
        A ground-truth file, or a folder holding ``<stem>.*``.
    """
    listing = listing or _Listing()

    def in_folder(folder: Path, *stems: str) -> Path:
        for stem in stems:
            hit = listing.find(folder, stem, exclude=inp)
            if hit is not None:
                return hit
        return folder / f"{stems[-1]}.*"  # none: reading it reports "<folder>/<stem>.*: no such file"

    mask_path = None
    if task == "inpaint":
        if mask is None:
            mask_path = listing.find(inp.parent, inp.stem + "_mask", exclude=inp)
        elif Path(mask).is_dir():
            mask_path = in_folder(Path(mask), inp.stem + "_mask", inp.stem)
        else:
            mask_path = Path(mask)
    ref_path = None
    if reference is not None:
        ref_path = in_folder(Path(reference), inp.stem) if Path(reference).is_dir() else Path(reference)
    return Job(inp, output_path(inp, output, task, scale), mask_path, ref_path)


def _written_by_deepprior(path: Path) -> bool:
    """True for a file that deepprior wrote: a result (its sidecar names it), a plot or a snapshot."""
    if path.stem.endswith("_plot"):
        return read_sidecar(path.with_name(path.stem[: -len("_plot")] + ".json")) is not None
    if path.parent.name.endswith("_steps"):
        return read_sidecar(path.parent.with_name(path.parent.name[: -len("_steps")] + ".json")) is not None
    meta = read_sidecar(path.with_suffix(".json"))
    return meta is not None and Path(meta["output"]).name == path.name


def plan(spec: str, *, task: str, scale: int | None = None, output: str | None = None,
         mask: str | None = None, reference: str | None = None) -> list[Job]:
    """The jobs of a folder or glob ``spec`` (a single file: a list of one).

    With several inputs ``output`` is a folder (created when needed; default: beside each input).
    Not inputs: the masks and references of other inputs (for ``inpaint``, ``<stem>_mask.*``
    beside ``<stem>.*``), and files deepprior wrote (results, plots, snapshots), so that a folder
    can be run again in place.

    Raises
    ------
    PlanError
        No images, ``output`` naming a file for several inputs, a reference file for several
        inputs, or two inputs whose results would have the same name.
    """
    inputs = collect(spec)
    if inputs is None:
        inputs = [Path(spec)]
    else:
        inputs = [p for p in inputs if not _written_by_deepprior(p)]
        if task == "inpaint":  # photo_mask.png beside photo.png is its mask, not a photo
            stems = {p.with_suffix("") for p in inputs}
            inputs = [p for p in inputs if not (p.stem.endswith("_mask") and p.with_name(p.stem[:-5]) in stems)]
    if not inputs:
        raise PlanError(f"{spec}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    several = len(inputs) > 1
    if several and output is not None and not Path(output).is_dir():
        if Path(output).suffix.lower() in IMAGE_SUFFIXES or Path(output).is_file():
            raise PlanError(f"-o {output}: with several inputs, -o must be a folder")
        output = str(Path(output)) + "/"
    if several and reference is not None and not Path(reference).is_dir():
        raise PlanError("--reference: with several inputs, give a folder of ground truths named like the inputs")
    listing = _Listing()
    jobs = [make_job(p, task=task, scale=scale, output=output, mask=mask, reference=reference, listing=listing)
            for p in inputs]
    # drop the inputs that are another job's mask, reference, result or plot
    used_by: dict[Path, set[Job]] = {}
    for j in jobs:
        for p in (j.mask, j.reference, j.output, j.plot):
            if p is not None:
                used_by.setdefault(p.resolve(), set()).add(j)
    jobs = [j for j in jobs if not used_by.get(j.input.resolve(), set()) - {j}]
    seen: dict[Path, Job] = {}
    read = {p.resolve(): kind for j in jobs for kind, p in (("mask", j.mask), ("reference", j.reference)) if p is not None}
    for j in jobs:
        if j.output.resolve() == j.input.resolve():
            raise PlanError(f"{j.output}: the output would overwrite the input; choose another -o")
        for p in (j.output, j.sidecar):
            if p.resolve() in read:
                raise PlanError(f"{p}: the output would overwrite a {read[p.resolve()]}; choose another -o")
        other = seen.setdefault(j.output.resolve(), j)
        if other is not j:
            raise PlanError(f"{other.input} and {j.input} would both write {j.output}; rename one of them")
    checked = set()
    for j in jobs:  # before any fit: the results must have a place to go
        if j.output.parent not in checked:
            checked.add(j.output.parent)
            problem = output_problem(j.output)
            if problem:
                raise PlanError(problem)
    return jobs


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------


@dataclass
class Summary:
    """The outcome of :func:`run`."""

    total: int
    done: int = 0
    skipped: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """130 when interrupted, 1 when an image failed, else 0."""
        return EXIT_INTERRUPTED if self.interrupted else EXIT_FAILED if self.failed else 0

    def line(self) -> str:
        s = (f"{self.done} done, {self.skipped} skipped, {len(self.failed)} failed of {self.total} images "
             f"in {self.seconds:.1f} s")
        return s + (" (interrupted)" if self.interrupted else "")


class _Report:
    """What the user sees: an outer progress bar over the images and one line per image."""

    def __init__(self, summary: Summary, todo: int, quiet: bool):
        self.summary, self.quiet, self.current = summary, quiet, ""
        self.bar = None
        if not quiet and todo:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=todo, unit="image", dynamic_ncols=True, file=sys.stderr)

    def say(self, line: str, always: bool = False):
        if self.quiet and not always:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def step(self, step, state):
        """Step-end callback for fits run in this process: the current image and step on the bar."""
        if self.bar is not None and (step % 10 == 0 or step == state.iters):
            self.bar.set_postfix_str(f"{self.current} step {step}/{state.iters}")
        return False

    def finished(self, job: Job, meta: dict):
        what = "interrupted" if meta["interrupted"] else "done"
        self.summary.done += meta["complete"]
        resumed = f", resumed at step {meta['resumed_from']}" if meta["resumed_from"] else ""
        self.say(f"{what:>11}  {job.input} -> {job.output}  ({meta['iterations']} steps, "
                 f"{meta['seconds']:.1f} s{resumed})")
        self._advance()

    def failed(self, job: Job, message: str):
        self.summary.failed.append((job.input, message))
        where = "" if str(job.input) in message else f"{job.input}: "  # read errors name the file already
        self.say(f"{'FAILED':>11}  {where}{message}", always=True)
        self._advance()

    def _advance(self):
        if self.bar is not None:
            self.bar.update(1)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def compute_here(pairs, settings: Settings, callbacks=()):
    """The local executor: fit the images in this process, one after the other.

    Parameters
    ----------
    pairs : iterator of (Job, Loaded)
    settings : Settings
    callbacks : list
        Step-end callbacks for each fit (progress).

    Yields
    ------
    (Job, Loaded, Computed or str)
    """
    for job, loaded in pairs:
        yield job, loaded, compute_or_error(job, loaded, settings, callbacks)


def run(jobs: list[Job], settings: Settings, executor=None, *, quiet: bool = False) -> Summary:
    """Fit ``jobs`` that are not done yet, write their results as they come, report and summarise.

    Parameters
    ----------
    jobs : list of Job
        From :func:`plan`.
    settings : Settings
        The same for every image.  ``settings.overwrite`` redoes the done ones too.
    executor : callable, optional
        ``executor(pairs, settings, callbacks)``, see the module docstring; default
        :func:`compute_here`.
    quiet : bool
        Only failures and the summary are printed.

    Returns
    -------
    Summary
        Ctrl-C stops the run (a fit in this process is saved as interrupted, marked incomplete).
    """
    start = time.perf_counter()
    todo = jobs if settings.overwrite else [j for j in jobs if not is_done(j, settings)]
    summary = Summary(total=len(jobs), skipped=len(jobs) - len(todo))
    if not quiet:
        p = settings.candidates()
        recipe = (f"preset {p[0].name}, {p[0].iters} steps" + (f" x{p[0].fits}" if p[0].fits > 1 else "")
                  if len(p) == 1 else
                  f"preset per image ({' or '.join(q.name for q in p)})")
        print(f"deepprior {settings.task}: {len(jobs)} images, {recipe}, seed "
              f"{settings.seed}" + (f"; {summary.skipped} already done, skipped" if summary.skipped else ""),
              file=sys.stderr)
    report = _Report(summary, len(todo), quiet)

    def loaded_jobs():  # read one image at a time, when the executor asks for the next one
        for job in todo:
            try:
                loaded = load(job, settings)
            except Exception as e:  # noqa: BLE001 - reported per image, the others go on
                report.failed(job, describe_error(e))
                continue
            report.current = job.input.name
            yield job, loaded

    executor = executor or compute_here
    try:
        for job, loaded, result in executor(loaded_jobs(), settings, [report.step]):
            if isinstance(result, str):
                report.failed(job, result)
                continue
            try:
                meta = save(job, loaded, result, settings)
            except Exception as e:  # noqa: BLE001
                report.failed(job, describe_error(e))
                continue
            report.finished(job, meta)
            if result.interrupted:  # Ctrl-C during a fit in this process: its result is saved; stop
                summary.interrupted = True
                break
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        report.close()
    summary.seconds = time.perf_counter() - start
    print(f"deepprior: {summary.line()}", file=sys.stderr)
    if summary.failed:
        print("failed: " + ", ".join(str(p) for p, _ in summary.failed), file=sys.stderr)
    return summary
