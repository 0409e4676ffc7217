#!/usr/bin/env bash
# Makes the README's before/after pictures with the deepprior CLI itself.
# Usage: bash docs/make_figures.sh [FIGURE ...]   (after `make demo` or `make test` created .venv)
# FIGURE: denoise deblock sr inpaint inpaint-pixels (default: all).
# Inputs are 128x128 crops of images in ../shared/data; denoising, JPEG, text and the missing pixels run
# their defaults (denoise-sure-fast at this noise level, deblock-fast, inpaint-blindspot), the other
# tasks the *-small presets: minutes in all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=../shared/data
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

crop() {  # crop SRC DST SIZE [TOP LEFT]   (centre crop by default)
  $BIN/python - "$@" <<'PY'
import sys
from PIL import Image
src, dst, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
im = Image.open(src).convert("RGB")
w, h = im.size
top = int(sys.argv[4]) if len(sys.argv) > 4 else (h - size) // 2
left = int(sys.argv[5]) if len(sys.argv) > 5 else (w - size) // 2
im.crop((left, top, left + size, top + size)).save(dst)
PY
}

montage() {  # montage OUT TITLE IMG LABEL [IMG LABEL ...]
  $BIN/python - "$@" <<'PY'
import sys
from PIL import Image, ImageDraw, ImageFont
out, title, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
pairs = list(zip(rest[::2], rest[1::2]))
tile = 256
font = ImageFont.load_default(size=14)
canvas = Image.new("RGB", (tile * len(pairs) + 8 * (len(pairs) - 1), tile + 24), "white")
for i, (path, label) in enumerate(pairs):
    im = Image.open(path).convert("RGB").resize((tile, tile), Image.NEAREST)
    canvas.paste(im, (i * (tile + 8), 24))
    ImageDraw.Draw(canvas).text((i * (tile + 8) + 4, 4), label, fill="black", font=font)
canvas.save(out, optimize=True)
PY
}

psnr() {  # psnr A B
  $BIN/python -c "
import sys, numpy as np
from deepprior.io import read_image
a, _ = read_image(sys.argv[1]); b, _ = read_image(sys.argv[2])
print(f'{10*np.log10(1/np.mean((a[..., :3]-b[..., :3])**2)):.2f} dB')" "$1" "$2"
}

DP="$BIN/deepprior"
OPTS="--seed 0 --quiet --overwrite"
WANT="${*:-denoise deblock sr inpaint inpaint-pixels}"
want() { [[ " $WANT " == *" $1 "* ]]; }

# Denoising: F16, sigma = 25
if want denoise; then
crop $DATA/paper/denoising/F16_GT.png $W/f16.png 128
$DP degrade noise $W/f16.png -o $W/f16_noisy.png --sigma 25 --seed 0
$DP denoise $W/f16_noisy.png -o $W/f16_denoised.png $OPTS
montage docs/images/denoise.png "denoise" $W/f16_noisy.png "noisy, $(psnr $W/f16_noisy.png $W/f16.png)" \
  $W/f16_denoised.png "deepprior, $(psnr $W/f16_denoised.png $W/f16.png)" $W/f16.png "ground truth"
fi

# JPEG artifacts: lenna, quality 10
if want deblock; then
crop $DATA/set14/lenna.png $W/lenna.png 128 200 220
$DP degrade jpeg $W/lenna.png -o $W/lenna_q10.png --quality 10
$DP deblock $W/lenna_q10.png -o $W/lenna_deblocked.png $OPTS
montage docs/images/deblock.png "deblock" $W/lenna_q10.png "JPEG q=10, $(psnr $W/lenna_q10.png $W/lenna.png)" \
  $W/lenna_deblocked.png "deepprior, $(psnr $W/lenna_deblocked.png $W/lenna.png)" $W/lenna.png "ground truth"
fi

# Super-resolution x4: zebra
if want sr; then
crop $DATA/paper/sr/zebra_GT.png $W/zebra.png 128
$DP degrade downscale $W/zebra.png -o $W/zebra_lr.png --scale 4
$DP sr $W/zebra_lr.png --scale 4 -o $W/zebra_x4.png --preset sr-x4-small $OPTS
montage docs/images/sr.png "sr" $W/zebra_lr.png "input 32x32 (shown x4, nearest)" \
  $W/zebra_x4.png "deepprior x4, $(psnr $W/zebra_x4.png $W/zebra.png)" $W/zebra.png "ground truth"
fi

# Inpainting: text over kate
if want inpaint || want inpaint-pixels; then
crop $DATA/paper/inpainting/kate.png $W/kate.png 128 120 200
fi
if want inpaint; then
$DP degrade mask $W/kate.png -o $W/kate_text.png --kind text --text "deep image prior" --seed 0
# (the default for text: inpaint-blindspot, every pixel to fill within 3 px of a known one)
$DP inpaint $W/kate_text.png --mask $W/kate_text_mask.png -o $W/kate_inpainted.png $OPTS
montage docs/images/inpaint.png "inpaint" $W/kate_text.png "text over the image" \
  $W/kate_inpainted.png "deepprior, $(psnr $W/kate_inpainted.png $W/kate.png)" $W/kate.png "ground truth"
fi

# Inpainting: half of kate's pixels missing (the default for such masks: inpaint-blindspot)
if want inpaint-pixels; then
$DP degrade mask $W/kate.png -o $W/kate_dots.png --kind pixels --fraction 0.5 --seed 0
$DP inpaint $W/kate_dots.png --mask $W/kate_dots_mask.png -o $W/kate_filled.png $OPTS
montage docs/images/inpaint-pixels.png "inpaint" $W/kate_dots.png "50 % of the pixels missing" \
  $W/kate_filled.png "deepprior, $(psnr $W/kate_filled.png $W/kate.png)" $W/kate.png "ground truth"
fi

echo "wrote docs/images/ for: $WANT"
