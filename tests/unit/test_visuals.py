"""Latent-space pictures: interpolation paths, traversals, manifold grid, PCA, charts."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from vae_cli.evaluation.latent_views import (
    dims_by_kl,
    interpolation_grid,
    latent_scatter,
    lerp,
    manifold_latents,
    pca_2d,
    slerp,
    traversal_latents,
)
from vae_cli.evaluation.plots import PALETTE, bar_chart, grid_image, line_plot, save_png, scatter_plot, to_tensor


def test_lerp_is_a_straight_line_between_the_ends():
    z0, z1 = torch.randn(3, 5), torch.randn(3, 5)
    path = lerp(z0, z1, torch.linspace(0, 1, 5))
    assert path.shape == (3, 5, 5)
    torch.testing.assert_close(path[:, 0], z0)
    torch.testing.assert_close(path[:, -1], z1)
    torch.testing.assert_close(path[:, 2], (z0 + z1) / 2)


def test_slerp_follows_the_great_circle():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(4, 16, generator=g), torch.randn(4, 16, generator=g)
    z1 = z1 / z1.norm(dim=1, keepdim=True) * z0.norm(dim=1, keepdim=True)  # equal norms
    t = torch.linspace(0, 1, 7)
    path = slerp(z0, z1, t)
    torch.testing.assert_close(path[:, 0], z0)
    torch.testing.assert_close(path[:, -1], z1)
    # Equal-norm ends: every point keeps that norm (a straight line would shrink towards the origin).
    torch.testing.assert_close(path.norm(dim=-1), z0.norm(dim=1, keepdim=True).expand(4, 7))
    assert (lerp(z0, z1, t)[:, 3].norm(dim=-1) < z0.norm(dim=1) - 1e-3).all()
    # Angles from z0 grow linearly in t.
    angle = torch.arccos(torch.nn.functional.cosine_similarity(path, z0[:, None], dim=-1).clamp(-1, 1))
    torch.testing.assert_close(angle, angle[:, -1:] * t, atol=1e-3, rtol=0)


def test_slerp_of_parallel_vectors_falls_back_to_lerp():
    z0 = torch.tensor([[1.0, 2.0]])
    path = slerp(z0, 3 * z0, torch.linspace(0, 1, 3))
    assert torch.isfinite(path).all()
    torch.testing.assert_close(path, lerp(z0, 3 * z0, torch.linspace(0, 1, 3)))


def test_traversal_changes_one_coordinate_per_row():
    base = torch.tensor([0.5, -1.0, 2.0])
    values = torch.linspace(-3, 3, 4)
    z = traversal_latents(base, [2, 0], values).view(2, 4, 3)
    torch.testing.assert_close(z[0, :, 2], values)
    torch.testing.assert_close(z[1, :, 0], values)
    torch.testing.assert_close(z[0, :, :2], base[:2].expand(4, 2))
    torch.testing.assert_close(z[1, :, 1:], base[1:].expand(4, 2))


def test_dims_are_sorted_by_kl_largest_first_ties_in_index_order():
    assert dims_by_kl([0.1, 3.0, 0.1, 2.0]) == [1, 3, 0, 2]


def test_manifold_grid_covers_prior_quantiles_top_row_high_z2():
    z = manifold_latents(5).view(5, 5, 2)
    q = torch.distributions.Normal(0, 1).icdf(torch.linspace(0.05, 0.95, 5))
    torch.testing.assert_close(z[0, :, 0], q)  # columns: z1 increasing
    torch.testing.assert_close(z[:, 0, 1], q.flip(0))  # rows: z2 decreasing downwards
    assert z[0, 0, 1] == pytest.approx(1.6449, abs=1e-3)


def test_interpolation_grid_puts_the_real_images_at_the_ends():
    x0, x1 = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    z0, z1 = torch.zeros(2, 3), torch.ones(2, 3)

    def decode(z, y=None):  # a "decoder" whose image is the mean of z
        return z.mean(dim=1).view(-1, 1, 1, 1).expand(-1, 1, 4, 4)

    grid = interpolation_grid(decode, x0, x1, z0, z1, steps=3, spherical=False).view(2, 5, 1, 4, 4)
    assert grid[:, 0].eq(0).all() and grid[:, -1].eq(1).all()
    torch.testing.assert_close(grid[0, 1:4, 0, 0, 0], torch.tensor([0.0, 0.5, 1.0]))


def test_pca_finds_the_high_variance_plane_and_its_share():
    g = torch.Generator().manual_seed(1)
    n = 2000
    pts = torch.zeros(n, 5)
    pts[:, 3] = 10 * torch.randn(n, generator=g)
    pts[:, 1] = 3 * torch.randn(n, generator=g)
    pts[:, 0] = 0.1 * torch.randn(n, generator=g)
    proj, explained = pca_2d(pts)
    centred = pts - pts.mean(0)
    torch.testing.assert_close(proj[:, 0].abs(), centred[:, 3].double().abs(), atol=0.05, rtol=0)
    torch.testing.assert_close(proj[:, 1].abs(), centred[:, 1].double().abs(), atol=0.3, rtol=0)
    var = centred.pow(2).sum(0).double()
    torch.testing.assert_close(explained, var[[3, 1]] / var.sum(), atol=1e-4, rtol=0)


def test_scatter_draws_each_class_in_its_colour(tmp_path):
    pts = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    img = scatter_plot(pts, torch.tensor([0, 3, 3]), "t")
    colours = {c for _, c in img.getcolors(maxcolors=100000)}
    # Points and legend keys use the class's own colour: classes 0 and 3 present, no colour of class 1.
    assert PALETTE[0] in colours and PALETTE[3] in colours and PALETTE[1] not in colours
    one_class = {c for _, c in scatter_plot(pts, torch.tensor([0, 0, 0]), "t").getcolors(100000)}
    assert PALETTE[0] in one_class and PALETTE[3] not in one_class
    # 4-D latents go through PCA; 2-D ones are drawn as they are.
    four = latent_scatter(torch.randn(50, 4), torch.arange(50) % 10, "x")
    assert four.size == img.size and four.mode == "RGB"
    assert to_tensor(four).shape == (3, img.size[1], img.size[0])


def test_charts_and_grids_have_the_expected_sizes_and_are_written_atomically(tmp_path):
    bars = bar_chart([3.0, 0.0, 1.5], "kl", "dim", "nats")
    assert bars.size == (480, 320)
    lines = line_plot({"a": [(1, 2.0), (2, 1.0)], "b": [(1, 3.0)]}, "m", "x", "y")
    assert lines.size[1] == 380 and lines.size[0] > 560  # the legend adds room on the right
    grid = grid_image(torch.rand(6, 1, 28, 28), nrow=3)
    assert grid.size == (3 * 30 + 2, 2 * 30 + 2)
    path = save_png(grid, tmp_path / "sub" / "g.png")
    assert Image.open(path).size == grid.size and [p.name for p in path.parent.iterdir()] == ["g.png"]
    assert math.isclose(to_tensor(grid).max().item(), 1.0)


@pytest.mark.parametrize(
    ("shape", "nrow"), [((5, 1, 7, 9), 2), ((16, 3, 4, 4), 8), ((3, 3, 5, 5), 8), ((1, 1, 3, 3), 1)]
)
def test_image_grids_have_torchvisions_layout_without_importing_it(shape, nrow):
    from torchvision.utils import make_grid as torchvision_grid

    from vae_cli.evaluation.plots import make_grid

    images = torch.rand(shape)
    assert torch.equal(
        make_grid(images, nrow, padding=2, pad_value=1.0), torchvision_grid(images, nrow, 2, pad_value=1.0)
    )


def test_a_training_run_imports_neither_torchvision_nor_dynamo(tmp_path):
    import subprocess
    import sys

    from tests.conftest import TINY

    code = (
        "import sys, atexit\n"
        "atexit.register(lambda: print(sorted(m for m in ('torchvision', 'torch._dynamo') if m in sys.modules)))\n"
        f"sys.argv = ['vae-train', *{TINY!r}, 'trainer.epochs=1', 'hydra.run.dir={tmp_path / 'run'}']\n"
        "from vae_cli.cli import main\nmain()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"  # the start-up seconds they cost (README "Start-up")
