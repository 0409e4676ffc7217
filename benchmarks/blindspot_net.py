"""A negative result: a blind-spot *network* (Laine et al. 2019) instead of blind-spot *masking*.

    python -m benchmarks.blindspot_net [--images inpainting11/boat inpainting11/peppers256]
                                       [--steps 750] [--lr 0.002]

``inpaint-blindspot`` (``deepprior.objectives.BlindSpot``) hides a random share of the known pixels
from the network's input at every step and scores it on those.  Each prediction then comes from a
sparser input than the image has (a fifth to three fifths of the known pixels hidden), and each
step scores only the hidden pixels.  A blind-spot network ("High-Quality Self-Supervised Deep
Image Denoising", Laine, Karras, Lehtinen and Aila 2019) avoids both by construction: four
branches, each seeing only the half-plane above a pixel (convolutions padded on one side, a
one-row shift before each pooling and at the end) on the input rotated by 0, 90, 180 and 270
degrees, merged by 1x1 convolutions: the output at a pixel depends on every input pixel but that
one.  So it can see all the known pixels and be scored on all of them at every step.

This script fits such a network (no BatchNorm: in train mode its batch statistics carry every
pixel into every output; LeakyReLU; 32/32/64/64/64 channels; Adam, betas 0.8/0.9; the running
average 0.99 as ``inpaint-blindspot``'s) on the 128 px crops of ``benchmarks.fast``'s inpainting
task (50 % missing pixels; the tune images by default), with the masked image and the mask as
input, and reports the PSNR of the returned image (known pixels as given) at a few steps: seeing
every known pixel (``all``), and with 0.8 of them shown at random each step, scored on all the
known ones (``keep 0.8``).  Writes ``benchmarks/results/blindspot-net.md``.  About 10 minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time

from benchmarks.fast import RESULTS, TASKS, make_case
from benchmarks.protocol import psnr


def build(in_channels: int, out_channels: int, channels=(32, 32, 64, 64, 64)):
    import torch
    import torch.nn.functional as F
    from torch import nn

    class UpperConv(nn.Module):  # 3x3 convolution whose output row i sees input rows <= i
        def __init__(self, cin, cout):
            super().__init__()
            self.conv, self.act = nn.Conv2d(cin, cout, 3), nn.LeakyReLU(0.1, inplace=True)

        def forward(self, x):
            return self.act(self.conv(F.pad(x, (1, 1, 2, 0))))

    def shift_down(x):
        return F.pad(x, (0, 0, 1, 0))[..., : x.shape[-2], :]

    class BlindSpotNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = channels
            self.first = UpperConv(in_channels, c[0])
            self.down = nn.ModuleList(UpperConv(c[i], c[i + 1]) for i in range(len(c) - 1))
            self.up = nn.ModuleList(UpperConv(c[i + 1] + c[i], c[i]) for i in range(len(c) - 1))
            self.head = nn.Sequential(nn.Conv2d(4 * c[0], 64, 1), nn.LeakyReLU(0.1, inplace=True),
                                      nn.Conv2d(64, out_channels, 1))

        def branch(self, x):  # output row i sees input rows < i
            x = self.first(x)
            skips = [x]
            for d in self.down:
                x = d(F.max_pool2d(shift_down(x), 2))
                skips.append(x)
            skips.pop()
            for u in reversed(self.up):
                x = u(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skips.pop()], 1))
            return shift_down(x)

        def forward(self, x):  # (square images: the four rotations in one batch)
            ys = self.branch(torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)], 0)).chunk(4, 0)
            return torch.sigmoid(self.head(torch.cat([torch.rot90(y, -k, (2, 3)) for k, y in enumerate(ys)], 1)))

    return BlindSpotNet()


def fit(image: str, steps: int, lr: float, keep: float | None, report: list[int]) -> dict:
    import torch

    job, case = make_case(TASKS["inpaint"], image)
    d = case.degraded
    y = torch.from_numpy(d)[None, None] if d.ndim == 2 else torch.from_numpy(d).permute(2, 0, 1)[None]
    known = torch.from_numpy(~case.dip_kwargs["mask"]).float()[None, None]
    ch = y.shape[1]
    torch.manual_seed(job.seed)
    net = build(ch + 1, ch)
    opt = torch.optim.Adam(net.parameters(), lr, betas=(0.8, 0.9))
    average, rows, start = None, {}, time.perf_counter()
    for step in range(1, steps + 1):
        shown = known if keep is None else known * (torch.rand(known.shape) < keep)
        out = net(torch.cat([y * shown, shown], 1))
        loss = ((out - y) ** 2 * known).sum() / (known.sum() * ch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        w = min(0.99, (1 + step) / (10 + step))  # fitting.ema_weight with warm-up, as inpaint-blindspot's
        average = out.detach().clone() if average is None else average.mul_(w).add_(out.detach(), alpha=1 - w)
        if step in report:
            img = (known * y + (1 - known) * average)[0].permute(1, 2, 0).numpy()
            rows[step] = (psnr(img[..., 0] if ch == 1 else img, case.truth), float(loss), time.perf_counter() - start)
            print(f"{image} {'all' if keep is None else f'keep {keep}'} step {step}: {rows[step][0]:.2f} dB, "
                  f"known-pixel loss {rows[step][1]:.1e}, {rows[step][2]:.0f} s", flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.blindspot_net", description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", nargs="+", default=["inpainting11/boat", "inpainting11/peppers256"])
    ap.add_argument("--steps", type=int, default=750)
    ap.add_argument("--lr", type=float, default=0.002)
    args = ap.parse_args(argv)
    report = sorted({s for s in (100, 250, 500, args.steps) if s <= args.steps})
    command = " ".join(["python -m benchmarks.blindspot_net", *(sys.argv[1:] if argv is None else argv)])
    lines = [f"Reproduce: `{command}` (50 % missing pixels, the 128 px crops and seeds of `benchmarks.fast`'s "
             f"inpainting task; a blind-spot network, lr {args.lr:g}; the PSNR of the returned image, known pixels as "
             "given; the data term on the known pixels, which the network never sees at the pixel it predicts).", "",
             "| image | input | " + " | ".join(f"step {s}" for s in report) + " | s per step |",
             "|---|---|" + "---:|" * (len(report) + 1)]
    for image in args.images:
        for keep in (None, 0.8):
            rows = fit(image, args.steps, args.lr, keep, report)
            lines.append(f"| {image} | {'every known pixel' if keep is None else '0.8 of them, at random'} | "
                         + " | ".join(f"{rows[s][0]:.2f} dB (loss {rows[s][1]:.0e})" for s in report)
                         + f" | {rows[report[-1]][2] / report[-1]:.3f} |")
    (RESULTS / "blindspot-net.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
