"""Small charts drawn with PIL (scatter, bars, lines) and PNG files written atomically.

PIL rather than matplotlib: it is already a dependency, draws these few shapes in a few lines, and its PNG output
is byte-identical for identical input, which ``vae-sample --seed`` promises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from vae_cli.process.atomic import atomic_write
from vae_cli.process.errors import VaeCliError

# The ten colours of matplotlib's "tab10": distinct, and familiar from other latent-space plots.
PALETTE = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)
MARGIN = 48


def color(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def save_png(image: Image.Image, path: Path) -> Path:
    """Write ``image`` as PNG atomically (temp file in the same folder, then rename); an unwritable folder or a
    full disk is reported by name (VaeCliError), with nothing half-written left behind."""
    try:
        with atomic_write(path, durable=False) as f:
            image.save(f, format="PNG")
    except OSError as exc:
        raise VaeCliError(
            f"Could not write {path}: {exc.strerror or exc}. Choose a folder you can write to with enough free "
            f"space; nothing half-written was left there."
        ) from exc
    return path


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Images ``[N, C, H, W]`` tiled ``nrow`` to a row, as one RGB ``[3, H', W']`` tensor: the layout of
    torchvision.utils.make_grid (grey images repeated to three channels), without importing torchvision, whose
    import pulls in torch._dynamo (a second and a half at the first image log of every run)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[0] == 1:  # one image (a chart) is shown as it is, unpadded
        return images[0].clone()
    n, c, h, w = images.shape
    cols = min(nrow, n)
    rows = -(-n // cols)
    cell_h, cell_w = h + padding, w + padding
    grid = torch.full((c, rows * cell_h + padding, cols * cell_w + padding), pad_value, dtype=images.dtype)
    for i in range(n):
        y, x = divmod(i, cols)
        grid[:, y * cell_h + padding : y * cell_h + padding + h, x * cell_w + padding : x * cell_w + padding + w] = (
            images[i]
        )
    return grid


def grid_to_pil(grid: torch.Tensor) -> Image.Image:
    """A ``[3, H, W]`` grid in [0, 1] as an 8-bit PIL image (rounded as torchvision's save_image does)."""
    array = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def grid_image(images: torch.Tensor, nrow: int, padding: int = 2) -> Image.Image:
    """A grid of images in [0, 1] ``[N, C, H, W]`` as a PIL image (white padding, as the training grids)."""
    return grid_to_pil(make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=padding))


# Grids of small images are scaled up (nearest neighbour) to tiles of at least this many pixels a side: a 28-pixel
# digit at 1:1 is a speck on a modern screen.
MIN_TILE = 56
LABEL_FONT_SIZE = 13


def tile_scale(images: torch.Tensor) -> int:
    """The integer factor a grid of ``images`` is scaled up by (1 for a single image: a chart)."""
    if images.shape[0] <= 1:
        return 1
    return max(1, math.ceil(MIN_TILE / max(images.shape[-2:])))


def label_margins(
    title: str | None, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None
) -> tuple[int, int]:
    """``(left, top)``: where the grid starts in a labelled picture (what the labels take)."""
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    line = LABEL_FONT_SIZE + 6
    left = (max(int(font.getlength(t)) for t in row_labels) + 10) if row_labels else 0
    top = (line if title else 0) + (line if col_labels else 0)
    return left, top


def labelled_grid(
    images: torch.Tensor,
    nrow: int,
    title: str | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    padding: int = 2,
) -> Image.Image:
    """A grid of images in [0, 1] ``[N, C, H, W]``, ``nrow`` to a row, scaled to readable tiles (``MIN_TILE``),
    with a title above, a label left of each row and above each column: what each row and column shows (originals
    and reconstructions, a latent and its values, a class)."""
    images = images.detach().float().clamp(0, 1).cpu()
    scale = tile_scale(images)
    if scale > 1:
        images = images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    grid = grid_to_pil(make_grid(images, nrow=nrow, padding=padding))
    if not (title or row_labels or col_labels):
        return grid
    font = ImageFont.load_default(size=LABEL_FONT_SIZE)
    line = LABEL_FONT_SIZE + 6
    left, top = label_margins(title, row_labels, col_labels)
    width = max(left + grid.width, left + padding + int(font.getlength(title or "")) + 4)
    canvas = Image.new("RGB", (width, top + grid.height), "white")
    canvas.paste(grid, (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left + padding, 2), title, fill=(0, 0, 0), font=font)
    cols = min(nrow, images.shape[0])
    cell_h, cell_w = images.shape[-2] + padding, images.shape[-1] + padding
    if col_labels:
        y = (line if title else 0) + 2
        for i, text in enumerate(col_labels[:cols]):
            centre = left + padding + i * cell_w + images.shape[-1] / 2
            draw.text((centre - font.getlength(text) / 2, y), text, fill=(60, 60, 60), font=font)
    if row_labels:
        for i, text in enumerate(row_labels):
            middle = top + padding + i * cell_h + images.shape[-2] / 2 - LABEL_FONT_SIZE / 2
            draw.text((left - 6 - font.getlength(text), middle), text, fill=(60, 60, 60), font=font)
    return canvas


def value_label(value: float) -> str:
    """A latent value as a column label: ``-3``, ``-1.5``, ``0``, ``+1.5``."""
    value = 0.0 if abs(value) < 1e-6 else value
    return f"{value:+.3g}" if value else "0"


def to_tensor(image: Image.Image) -> torch.Tensor:
    """PIL RGB image -> float ``[3, H, W]`` in [0, 1] (what ``Tracker.images`` takes, with a batch dim)."""
    import numpy as np

    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


class _Axes:
    """Maps data coordinates into a square-ish plotting area and draws the frame, ticks and labels."""

    def __init__(
        self, size: tuple[int, int], xs: Sequence[float], ys: Sequence[float], title: str, legend_width: int = 0
    ) -> None:
        size = (size[0] + legend_width, size[1])
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = ImageFont.load_default()
        w, h = size
        self.box = (MARGIN + 16, MARGIN // 2 + 12, w - MARGIN // 2 - legend_width, h - MARGIN)
        self.x0, self.x1 = self._span(xs)
        self.y0, self.y1 = self._span(ys)
        self.title = title

    @staticmethod
    def _span(values: Sequence[float]) -> tuple[float, float]:
        finite = [v for v in values if math.isfinite(v)] or [0.0]
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) * 0.05 or max(abs(lo) * 0.05, 0.5)
        return lo - pad, hi + pad

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        return (
            left + (x - self.x0) / (self.x1 - self.x0) * (right - left),
            bottom - (y - self.y0) / (self.y1 - self.y0) * (bottom - top),
        )

    def frame(self, xlabel: str, ylabel: str, xticks: Sequence[float] | None = None) -> None:
        left, top, right, bottom = self.box
        d, f = self.draw, self.font
        d.rectangle(self.box, outline=(0, 0, 0))
        for t in xticks if xticks is not None else _ticks(self.x0, self.x1):
            x, _ = self.px(t, self.y0)
            d.line([(x, bottom), (x, bottom + 4)], fill=(0, 0, 0))
            d.text((x, bottom + 6), f"{t:g}", fill=(0, 0, 0), font=f, anchor="ma")
        for t in _ticks(self.y0, self.y1):
            _, y = self.px(self.x0, t)
            d.line([(left - 4, y), (left, y)], fill=(0, 0, 0))
            d.text((left - 6, y), f"{t:g}", fill=(0, 0, 0), font=f, anchor="rm")
        d.text(((left + right) / 2, bottom + 22), xlabel, fill=(0, 0, 0), font=f, anchor="ma")
        d.text((4, top - 14), ylabel, fill=(0, 0, 0), font=f)
        d.text(((left + right) / 2, 4), self.title, fill=(0, 0, 0), font=f, anchor="ma")

    def legend(self, names: Sequence[str], colors: Sequence[tuple[int, int, int]] | None = None) -> None:
        """Coloured keys to the right of the plotting area (never over the data)."""
        _, top, right, _ = self.box
        for i, name in enumerate(names):
            y = top + 6 + 12 * i
            self.draw.rectangle([right + 10, y, right + 18, y + 8], fill=colors[i] if colors else color(i))
            self.draw.text((right + 22, y - 1), name, fill=(0, 0, 0), font=self.font)


def scatter_plot(
    points: torch.Tensor,
    labels: torch.Tensor | None,
    title: str,
    xlabel: str = "z1",
    ylabel: str = "z2",
    size: int = 480,
    class_names: Sequence[str] = (),
) -> Image.Image:
    """2-D points ``[N, 2]``, one colour per integer label (0-9 keep distinct colours), with a legend that
    names the classes when ``class_names`` are given (label i is ``class_names[i]``)."""
    pts = points.detach().double().cpu()
    names = list(class_names)
    legend_width = (24 + 6 * max((len(n) for n in names), default=2)) if labels is not None else 0
    ax = _Axes((size, size), pts[:, 0].tolist(), pts[:, 1].tolist(), title, legend_width=max(40, legend_width))
    ax.frame(xlabel, ylabel)
    lab = labels.cpu().tolist() if labels is not None else [0] * pts.shape[0]
    for (x, y), c in zip(pts.tolist(), lab, strict=True):
        u, v = ax.px(x, y)
        ax.draw.ellipse([u - 1.5, v - 1.5, u + 1.5, v + 1.5], fill=color(int(c)))
    if labels is not None:
        classes = sorted(set(lab))[:20]
        text = [names[c] if 0 <= c < len(names) else str(c) for c in classes]
        ax.legend(text, [color(int(c)) for c in classes])
    return ax.image


def bar_chart(values: Sequence[float], title: str, xlabel: str, ylabel: str, size=(480, 320)) -> Image.Image:
    """One bar per value, labelled by its index (e.g. nats of KL per latent dimension)."""
    n = len(values)
    ax = _Axes(size, [-0.5, n - 0.5], [0.0, *values], title)
    ax.x0, ax.x1 = -0.6, n - 0.4
    ax.y0 = 0.0
    step = max(1, math.ceil(n / 12))
    ax.frame(xlabel, ylabel, xticks=list(range(0, n, step)))
    for i, v in enumerate(values):
        x0, y0 = ax.px(i - 0.4, max(v, 0.0))
        x1, y1 = ax.px(i + 0.4, 0.0)
        ax.draw.rectangle([x0, y0, x1, y1], fill=color(0))
    return ax.image


def line_plot(
    series: dict[str, list[tuple[float, float]]], title: str, xlabel: str, ylabel: str, size=(560, 380)
) -> Image.Image:
    """One coloured line with markers per named series of (x, y) points, sorted by x."""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    named = len(series) > 1 or bool(next(iter(series), ""))
    legend_width = 24 + 6 * max((len(name) for name in series), default=0) if named else 0
    ax = _Axes(size, xs, ys, title, legend_width=legend_width)
    ax.frame(xlabel, ylabel)
    for i, pts in enumerate(series.values()):
        coords = [ax.px(x, y) for x, y in sorted(pts) if math.isfinite(y)]
        if len(coords) > 1:
            ax.draw.line(coords, fill=color(i), width=2)
        for u, v in coords:
            ax.draw.ellipse([u - 3, v - 3, u + 3, v + 3], fill=color(i))
    if named:
        ax.legend(list(series))
    return ax.image
