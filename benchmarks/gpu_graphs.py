"""How far a CUDA-graph fit and an eager fit drift apart, beside how far two eager fits do.

    python -m benchmarks.gpu_graphs [--out benchmarks/results/gpu/graphs.json]

On a GPU two eager fits of one seed are not bit-identical: cuDNN's convolutions and the backward
of reflection padding and bilinear upsampling accumulate in a varying order, and Adam's first
steps, which move every weight by about the learning rate whatever its gradient's size, amplify
that rounding.  ``tests/test_fitting.py``'s CUDA-graph tests set their tolerances from this
script's figures.  Each case runs ``fit`` three times (eager, eager, graphed) for 1 and for 3
steps, with cuDNN's default and with ``cudnn.deterministic``; per pair it gives the relative
difference of the loss at each step and the images' largest difference and RMSE.  Cases: the
tests' tiny network (48x32, plain, with a rejected step, SURE, blind-spot) and ``denoise-small``'s
network at 64x64.  A CUDA GPU only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("plain", "backtrack2", "sure", "blindspot", "small64")


def run(kind: str, graph: bool, iters: int):
    import torch

    from deepprior.fitting import fit, make_input
    from deepprior.forward import Identity, Mask
    from deepprior.networks import NetworkConfig, SkipNet, build_network
    from deepprior.objectives import BlindSpot, Sure
    from deepprior.presets import get_preset

    tiny = NetworkConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2))  # as the tests'
    torch.manual_seed(0)
    y = torch.rand(1, 3, 48, 32, generator=torch.Generator().manual_seed(2)).cuda()
    gen = torch.Generator("cuda").manual_seed(1)
    if kind in ("plain", "backtrack2"):
        net = SkipNet(4, 3, tiny).cuda()
        z = make_input("noise", 4, 48, 32, generator=torch.Generator().manual_seed(0)).cuda()
        forward = Identity() if kind == "plain" else _Spike({2})
        return fit(net, z, forward, y, iters=iters, ema=None, generator=gen, cuda_graph=graph)
    if kind == "small64":
        p = get_preset("denoise-small")
        g = torch.Generator().manual_seed(0)
        z = make_input("noise", p.input_depth, 64, 64, scale=0.1, generator=g).cuda()
        y = torch.rand(1, 3, 64, 64, generator=g).cuda()
        net = build_network(p.network, p.input_depth, 3).cuda()
        return fit(net, z, Identity(), y, iters=iters, ema=None, generator=gen, cuda_graph=graph)
    if kind == "sure":
        net = SkipNet(3, 3, tiny).cuda()
        return fit(net, y.clone(), Identity(), y, iters=iters, jitter=0.0, generator=gen, cuda_graph=graph,
                   ema=None, objective=Sure(0.1))
    known = (torch.rand(1, 1, 48, 32, generator=torch.Generator().manual_seed(3)) < 0.5).float().cuda()
    net = SkipNet(4, 3, tiny).cuda()
    return fit(net, y.clone(), Mask(known), y, iters=iters, jitter=0.0, generator=gen, cuda_graph=graph,
               backtrack=False, objective=BlindSpot(0.8))


def _Spike(bad_calls):
    """Identity, except that the output is ruined at the calls listed (a rejected step)."""
    from deepprior.forward import ForwardModel

    class Spike(ForwardModel):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return x + 10.0 if self.calls in bad_calls else x

    return Spike()


def compare(a, b) -> dict:
    d = (a.image - b.image).abs()
    return {"loss_rel": [abs(x - y) / abs(x) for x, y in zip(a.history["loss"], b.history["loss"])],
            "max": float(d.max()), "rmse": float(d.pow(2).mean().sqrt())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.gpu_graphs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu" / "graphs.json")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu_graphs: no CUDA GPU available")
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "cases": {}}
    for deterministic in (False, True):
        torch.backends.cudnn.deterministic = deterministic
        for kind in CASES:
            for iters in (1, 3):
                e1, e2, g = run(kind, False, iters), run(kind, False, iters), run(kind, True, iters)
                key = f"{kind} iters={iters} deterministic={deterministic}"
                result["cases"][key] = {"graph_vs_eager": compare(e1, g), "eager_vs_eager": compare(e1, e2)}
                print(key, json.dumps(result["cases"][key]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
