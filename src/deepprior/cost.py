"""What a fit will cost before it starts: memory and work per step, and whether it fits.

Both scale with the number of pixels the network sees (its input is padded to a multiple of
``2^levels``), so they are measured once on a small probe of the same network and scaled:

* **memory**: weights, gradients and Adam's two moments (4 copies of the parameters), plus the
  tensors autograd saves for the backward pass of one step (each storage once), counted with
  :class:`torch.autograd.graph.saved_tensors_hooks` on a probe of ``PROBE`` x ``PROBE`` pixels,
  plus the images the loop keeps (input, jitter, output, average, a stopping rule's window);
* **work**: the flops of one training step (forward and backward) of the convolutions and linear
  layers, counted from their shapes on the probe as :class:`torch.utils.flop_counter.FlopCounterMode`
  counts them (``tests/test_cost.py`` checks they agree).  A forward hook per layer is a little
  cheaper than FlopCounterMode's interception of every operation: the two probes of the paper's
  network take 0.30-0.31 s instead of 0.36-0.42 s on a 2-core CPU.

The saved bytes are fitted as linear in the pixel count from two probes (``PROBE`` and twice
that), which absorbs most of the padding's border term; flops scale exactly.

``python -m benchmarks.memory`` compares the memory estimate with the measured peak.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

# Autograd's saved tensors are not all: during the backward pass gradients of activations are alive
# too.  Measured peak / estimate before this factor (python -m benchmarks.memory, CPU, fp32, minus
# ~0.4 GiB for Python and torch): 1.04-1.13; the factor keeps the estimate on the safe side.
TRANSIENT = 1.15
PROBE = 64  # side of the smaller probe (the other is twice as large; both multiples of the network's)
GIB = 2**30


@dataclass(frozen=True)
class Estimate:
    """The cost of one fit, from :func:`estimate`."""

    pixels: int  # pixels of the network's (padded) output
    parameters: int
    gflop_per_step: float  # forward + backward, convolutions and matmuls
    activation_bytes: int  # saved for backward in one step, times TRANSIENT
    state_bytes: int  # weights, gradients, Adam moments, input, average, rule window
    bytes: int  # activation_bytes + state_bytes (excludes the framework itself, ~0.3-0.5 GiB)

    @property
    def gib(self) -> float:
        return self.bytes / GIB

    def scaled(self, factor: float) -> "Estimate":
        """The memory figures times ``factor`` (e.g. :data:`deepprior.runtime.TUNED_MEMORY_FACTOR`)."""
        if factor == 1:
            return self
        return replace(self, activation_bytes=int(self.activation_bytes * factor),
                       state_bytes=int(self.state_bytes * factor), bytes=int(self.bytes * factor))

    def summary(self) -> dict:
        """The figures a sidecar records."""
        return {"memory_gib": round(self.gib, 3), "gflop_per_step": round(self.gflop_per_step, 2)}

    def describe(self, steps: int | None = None) -> str:
        text = f"~{self.gib:.1f} GiB of memory for the fit, {self.gflop_per_step:.0f} GFLOP per step"
        if not steps:
            return text
        tflop = steps * self.gflop_per_step / 1000
        return text + f" ({tflop:.{0 if tflop >= 10 else 1}f} TFLOP for {steps} steps)"


def estimate(network, in_channels: int, out_channels: int, height: int, width: int, *, multiple: int = 1,
             window: int = 0, input_divisor: int = 1, batch: int = 1) -> Estimate:
    """Estimate memory and flops of fitting ``network`` (a module, on the CPU) at ``height`` x
    ``width`` (the padded size the network sees).

    ``multiple``: the network's size multiple (the probe is a multiple of it); ``window``: the
    number of image-sized buffers a stopping rule keeps (a windowed-variance rule's window);
    ``input_divisor``: the network's input is this many times smaller than its output per side
    (a decoder's; see :func:`deepprior.networks.input_size`); ``batch``: inputs per step (2 for a
    SURE fit, which also runs the network on a perturbed input).
    The network is not changed (the probe runs on a deep copy in train mode).
    """
    import copy

    side = math.ceil(max(PROBE, 2 * multiple) / multiple) * multiple
    net = copy.deepcopy(network).cpu().float().train()
    saved1, _ = _probe(net, in_channels, side, input_divisor)
    saved2, flops = _probe(net, in_channels, 2 * side, input_divisor)
    n1, n2, n = side * side, 4 * side * side, height * width
    params = sum(p.numel() for p in network.parameters())
    image = out_channels * n * 4
    state = 4 * params * 4 + 3 * batch * in_channels * n // input_divisor**2 * 4 + (4 + window) * image
    # saved bytes are linear in the pixels plus a border term (padding), which the two probes fit
    activations = int(batch * TRANSIENT * max(saved1 + (saved2 - saved1) * (n - n1) / (n2 - n1), 0))
    return Estimate(n, params, batch * flops * n / n2 / 1e9, activations, state, activations + state)


def _probe(net, in_channels: int, side: int, input_divisor: int = 1) -> tuple[int, int]:
    """(bytes autograd saves, flops) of one training step of ``net`` at ``side`` x ``side``."""
    import torch
    from torch import nn

    storages: dict[int, int] = {}  # one tensor can be saved by several ops: count its storage once
    flops = [0]

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    def count(module, inputs, output):
        # multiply-adds x 2 of the forward; the backward computes the weight's gradient (as many)
        # and, when the input needs one, the input's gradient (as many again)
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        else:  # nn.Linear
            per_output = module.in_features
        forward = 2 * output.numel() * per_output
        flops[0] += forward * (2 + bool(inputs[0].requires_grad))

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    z = torch.zeros(1, in_channels, side // input_divisor, side // input_divisor)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(z).float().square().mean().backward()
    finally:
        for h in hooks:
            h.remove()
    net.zero_grad(set_to_none=True)
    return sum(storages.values()), flops[0]


def available_bytes(device) -> int | None:
    """Memory free for a fit on ``device`` (CUDA: free device memory; CPU: the system's
    MemAvailable on Linux), or None where unknown."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free)
    if dev.type == "cpu" and os.path.exists("/proc/meminfo"):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    return None
