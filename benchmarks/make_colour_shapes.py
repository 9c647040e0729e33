"""Write a folder of 8-bit colour images for the colour preset (``experiment=colour_logistic``), where CIFAR-10
cannot be downloaded: each 32x32 PNG is a two-colour gradient with one to three coloured shapes (disc, square,
triangle), in one sub-folder per class (the first shape's kind), so ``dataset=image_folder`` reads it as is.

    python benchmarks/make_colour_shapes.py --out data/colour_shapes --n 12000

Deterministic for a given --seed. Smooth regions, sharp edges and saturated colours: what a per-pixel 8-bit
likelihood (a logistic mixture with coupled channels) has to model.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageDraw

KINDS = ("disc", "square", "triangle")


def colour(rng: random.Random) -> tuple[int, int, int]:
    return tuple(rng.randrange(256) for _ in range(3))  # type: ignore[return-value]


def draw_image(rng: random.Random, size: int) -> tuple[Image.Image, str]:
    top, bottom = colour(rng), colour(rng)
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    for y in range(size):
        t = y / (size - 1)
        row = tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        for x in range(size):
            pixels[x, y] = row
    pen = ImageDraw.Draw(image)
    first = ""
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(KINDS)
        first = first or kind
        r = rng.randint(size // 8, size // 3)
        cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
        fill = colour(rng)
        if kind == "disc":
            pen.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif kind == "square":
            pen.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
        else:
            pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=12000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for kind in KINDS:
        (args.out / kind).mkdir(parents=True, exist_ok=True)
    for index in range(args.n):
        image, kind = draw_image(rng, args.size)
        image.save(args.out / kind / f"{index:06d}.png")
    print(f"wrote {args.n} images of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
