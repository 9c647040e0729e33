"""Ground-truth factor data: the shapes2d renderer, the grids, the dSprites reader, factor tables."""

from __future__ import annotations

import itertools
import math
import zipfile

import numpy as np
import pytest

from vae_cli.factors.dsprites import FILENAME, download, load_dsprites
from vae_cli.factors.shapes2d import SIZES, Shapes2D, render
from vae_cli.factors.table import FactorTable, read_factors_csv
from vae_cli.factors.xyobject import XYObject
from vae_cli.process.errors import DataError

S2D = Shapes2D()


def one(shape=1, scale=5, orientation=0, x=16, y=16) -> np.ndarray:
    return S2D.observations(np.array([[shape, scale, orientation, x, y]]))[0, 0].astype(np.float64) / 255


def moments(image: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """Area, centroid (column, row) and the second central moments [[mu20, mu11], [mu11, mu02]] (x right, y up)."""
    rows, cols = np.nonzero(image)
    x, y = cols + 0.5, -(rows + 0.5)
    cov = np.cov(np.stack([x, y]), bias=True)
    return float(len(rows)), float(x.mean()), float(-y.mean()), cov


def test_the_grid_is_dsprites_grid_and_indices_round_trip():
    assert SIZES == (3, 6, 40, 32, 32) and S2D.size == 737_280
    np.testing.assert_allclose(S2D.factor_values(1), np.linspace(0.5, 1, 6))
    np.testing.assert_allclose(S2D.factor_values(2), np.linspace(0, 2 * math.pi, 40))
    idx = np.random.default_rng(0).integers(0, S2D.size, 1000)
    np.testing.assert_array_equal(S2D.index_of(S2D.factors_of(idx)), idx)
    # Row-major, the last factor fastest (dSprites' file order).
    np.testing.assert_array_equal(
        S2D.factors_of(np.array([0, 1, 32, 1024])), [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0]]
    )


def test_rendering_is_deterministic_binary_and_inside_the_frame():
    f = S2D.sample_factors(300, np.random.default_rng(1))
    a, b = S2D.observations(f), S2D.observations(f.copy())
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == (300, 1, 64, 64) and set(np.unique(a)) <= {0, 255}
    # The largest shapes at the corners still do not touch the border (nothing is clipped).
    corners = np.array([[s, 5, o, x, y] for s in range(3) for o in range(0, 40, 3) for x in (0, 31) for y in (0, 31)])
    images = S2D.observations(corners)
    assert images[:, :, 0, :].max() == 0 and images[:, :, -1, :].max() == 0
    assert images[:, :, :, 0].max() == 0 and images[:, :, :, -1].max() == 0


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_position_moves_the_centroid_monotonically(shape):
    xs = [moments(one(shape=shape, x=i))[1] for i in range(32)]
    ys = [moments(one(shape=shape, y=i))[2] for i in range(32)]
    assert all(b > a for a, b in itertools.pairwise(xs)), xs
    assert all(b > a for a, b in itertools.pairwise(ys)), ys  # y grows downwards in the image
    # ... by the grid step: 0.6 of 64 pixels over 31 steps.
    assert xs[-1] - xs[0] == pytest.approx(0.6 * 64, abs=1.0)
    # Moving x does not move the centroid in y.
    assert np.ptp([moments(one(shape=shape, x=i))[2] for i in range(32)]) < 0.6


@pytest.mark.parametrize("shape", [0, 1, 2])
def test_scale_grows_the_area_monotonically_and_quadratically(shape):
    areas = [moments(one(shape=shape, scale=s))[0] for s in range(6)]
    assert all(b > a for a, b in itertools.pairwise(areas)), areas
    # Scale 1 vs 0.5: twice the size, 4x the area (within the pixel rounding of an 8-pixel square).
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.15)


def test_rotation_turns_the_second_moments_with_the_orientation():
    angles = np.linspace(0, 2 * math.pi, 40)
    for o in range(0, 10):  # 0 .. 81 degrees: the ellipse's long axis follows theta (it repeats every pi)
        _, _, _, cov = moments(one(shape=1, orientation=o))
        axis = 0.5 * math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1])
        assert axis == pytest.approx(angles[o], abs=math.radians(4)), o
    # The area does not change under rotation (up to pixel rounding), and 0 and 2 pi are the same picture.
    areas = [moments(one(shape=1, orientation=o))[0] for o in range(40)]
    assert np.ptp(areas) / np.mean(areas) < 0.08
    np.testing.assert_array_equal(one(shape=2, orientation=0), one(shape=2, orientation=39))
    # The heart has no symmetry: half a turn moves its centroid.
    assert not np.array_equal(one(shape=2, orientation=0), one(shape=2, orientation=20))


def test_the_three_shapes_differ_and_render_matches_real_values():
    images = [one(shape=s) for s in range(3)]
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    direct = render(np.array([2]), np.array([1.0]), np.array([0.0]), np.array([0.0]), np.array([0.0]))
    np.testing.assert_array_equal(direct, S2D.observations(np.array([[2, 5, 0, 0, 0]])))
    assert direct.shape == (1, 1, 64, 64)


def test_sharing_holds_one_factor_and_draws_the_others():
    rng = np.random.default_rng(0)
    f = S2D.sample_factors(500, rng)
    g = S2D.sharing(f, 2, rng)
    np.testing.assert_array_equal(g[:, 2], f[:, 2])
    assert all((g[:, k] != f[:, k]).mean() > 0.5 for k in (0, 1, 3, 4))
    fixed = S2D.sample_with_fixed(64, 4, rng)
    assert len(np.unique(fixed[:, 4])) == 1 and len(np.unique(fixed[:, 3])) > 10


def test_xyobject_squares_have_their_colour_position_and_size():
    xy = XYObject()
    assert xy.factor_sizes == (16, 16, 4, 6) and xy.size == 6144
    images = xy.observations(np.array([[0, 0, 0, 0], [15, 15, 3, 4], [3, 7, 2, 1]]))
    assert images.shape == (3, 3, 64, 64)
    red = images[0]
    assert (red[0] == 255).sum() == 64 and red[1].max() == 0 and red[2].max() == 0  # an 8x8 red square
    blue = images[1]
    rows, cols = np.nonzero(blue[2])
    assert (rows.min(), cols.min(), rows.max(), cols.max()) == (44, 44, 63, 63)  # 20x20, bottom right
    assert (images[2][0] == 255).sum() == 256 and (images[2][1] == 255).sum() == 256  # yellow 16x16


def write_fake_dsprites(path, sizes=(1, 3, 2, 4, 3, 3)):
    classes = np.indices(sizes).reshape(len(sizes), -1).T  # row-major: the last factor fastest, as the real file
    imgs = (np.random.default_rng(0).random((len(classes), 64, 64)) > 0.9).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(float))
    return imgs, classes


def test_dsprites_reads_the_official_layout_and_drops_the_colour_factor(tmp_path):
    imgs, classes = write_fake_dsprites(tmp_path / "dsprites" / FILENAME)
    grid = load_dsprites(tmp_path, allow_download=False)
    assert grid.factor_names == ("shape", "scale", "orientation", "x", "y")
    assert grid.factor_sizes == (3, 2, 4, 3, 3)
    rows = np.array([0, 5, 71, 200])
    np.testing.assert_array_equal(grid.observations(classes[rows, 1:], None)[:, 0], imgs[rows] * 255)


def test_dsprites_missing_wrong_and_truncated_files_get_clear_messages(tmp_path):
    with pytest.raises(DataError, match=r"dataset\.download=true"):
        load_dsprites(tmp_path, allow_download=False)
    target = tmp_path / "dsprites" / FILENAME
    write_fake_dsprites(target)
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])  # an interrupted download
    with pytest.raises(DataError, match="truncated or interrupted download"):
        load_dsprites(tmp_path, allow_download=False)
    np.savez(target, images=np.zeros(3))  # a wrong file under the right name
    with pytest.raises(DataError, match="not imgs and latents_classes"):
        load_dsprites(tmp_path, allow_download=False)
    imgs, classes = write_fake_dsprites(target)
    np.savez(target, imgs=imgs[:-1], latents_classes=classes[:-1])  # rows missing
    with pytest.raises(DataError, match=r"do not match|full factor grid"):
        load_dsprites(tmp_path, allow_download=False)


def test_dsprites_download_goes_through_a_temporary_name(tmp_path):
    source = tmp_path / "mirror" / FILENAME
    write_fake_dsprites(source)
    got = download(tmp_path / "data", url=source.as_uri())
    assert got == tmp_path / "data" / "dsprites" / FILENAME and got.read_bytes() == source.read_bytes()
    assert not list((tmp_path / "data" / "dsprites").glob("*.part"))
    with pytest.raises(DataError, match="failed"):
        download(tmp_path / "other", url=(tmp_path / "nowhere.npz").as_uri())
    assert not list((tmp_path / "other" / "dsprites").glob("*"))  # nothing half-written left behind
    assert zipfile.is_zipfile(got)


def test_a_factor_table_holds_factors_among_existing_rows_only(tmp_path):
    csv = tmp_path / "factors.csv"
    csv.write_text(
        "file,colour,size\n"
        + "".join(
            f"{i}.png,{c},{s}\n"
            for i, (c, s) in enumerate([("red", 1.0), ("blue", 2.0), ("red", 2.0), ("green", 3.5), ("blue", 1.0)])
        )
    )
    files, levels, names, values = read_factors_csv(csv)
    assert files[0] == "0.png" and names == ("colour", "size")
    np.testing.assert_array_equal(levels, [[2, 0], [0, 1], [2, 1], [1, 2], [0, 0]])  # sorted levels
    assert list(values[0]) == ["blue", "green", "red"] and list(values[1]) == [1.0, 2.0, 3.5]
    images = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1).repeat(4, axis=2).repeat(4, axis=3)
    table = FactorTable(images, levels, names, values)
    rng = np.random.default_rng(0)
    shared = table.sharing(np.repeat(levels[:1], 200, axis=0), 0, rng)  # colour red held: rows 0 and 2 only
    assert {tuple(r) for r in shared.tolist()} == {(2, 0), (2, 1)}
    np.testing.assert_array_equal(table.observations(levels[[3, 1]], rng)[:, 0, 0, 0], [3, 1])
    (tmp_path / "bad.csv").write_text("name,colour\na.png,red\n")
    with pytest.raises(DataError, match="'file' column"):
        read_factors_csv(tmp_path / "bad.csv")


def test_factor_datasets_split_the_grid_once_and_label_by_a_factor():
    from vae_cli.config.datasets import DatasetConfig
    from vae_cli.datasets import load_dataset
    from vae_cli.datasets.factor_sets import grid_split

    cfg = DatasetConfig(name="shapes2d", channels=1, image_size=64, num_train=600, num_test=100, val_size=100)
    a, b = load_dataset(cfg, seed=0), load_dataset(cfg, seed=1)
    assert a.train.shape == (500, 1, 64, 64) and a.val.shape[0] == 100 and a.test.shape[0] == 100
    assert a.class_names == ("square", "ellipse", "heart")
    assert a.test.equal(b.test) and not a.val.equal(b.val)  # the test grid points do not move with the seed
    train_idx, test_idx = grid_split(737_280, 600, 100, "shapes2d")
    assert not set(train_idx.tolist()) & set(test_idx.tolist())
    factors = S2D.factors_of(test_idx)
    np.testing.assert_array_equal(a.test_labels.numpy(), factors[:, 0])  # the label is the shape
    np.testing.assert_array_equal(a.test.numpy(), S2D.observations(factors))
    # xyobject: the whole grid minus the test split by default, labelled by colour.
    xy = load_dataset(
        DatasetConfig(name="xyobject", channels=3, image_size=64, num_train=None, num_test=512, val_size=512), seed=0
    )
    assert xy.train.shape[0] + xy.val.shape[0] + xy.test.shape[0] == 6144 and xy.num_classes == 6
    with pytest.raises(DataError, match="more than the 6144 grid points"):
        grid_split(6144, 6000, 512, "xyobject")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,x\n", "one row"),
        ("file,x,x\na.png,1,2\nb.png,2,1\n", "appear more than once"),
        ("file,x\na.png,1\nb.png,2,3\n", "row 3 has 3 fields where the header has 2"),
        ("file,x\na.png,1\nb.png\n", "row 3 has 1 fields"),
        ("file,x\na.png,1\na.png,2\n", "'a.png' is listed twice (rows 2 and 3)"),
        ("file,x\na.png,1\nb.png,nan\n", "'x' is empty or nan"),
        ("file,x\na.png,1\nb.png,\n", "'x' is empty or nan"),
        ("file,x,y\na.png,1,3\nb.png,2,3\n", "'y' has one value only"),
        ("file,x\n../a.png,1\nb.png,2\n", "stay inside dataset.root"),
        ("file,x\n/etc/a.png,1\nb.png,2\n", "stay inside dataset.root"),
    ],
)
def test_a_factors_csv_is_checked_whole_and_each_problem_is_named(tmp_path, text, message):
    csv = tmp_path / "factors.csv"
    csv.write_text(text)
    with pytest.raises(DataError, match="factors CSV") as info:
        read_factors_csv(csv)
    assert message in str(info.value)


def test_a_factors_csv_saved_by_a_spreadsheet_reads_like_a_plain_one(tmp_path):
    plain, excel = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_text("file,x\na.png,1\nb.png,2\n")
    # A byte-order mark, CRLF line ends, spaces around fields and a trailing empty line.
    excel.write_bytes("\ufefffile , x\r\na.png, 1\r\nb.png ,2\r\n\r\n".encode())
    got, want = read_factors_csv(excel), read_factors_csv(plain)
    assert got[0] == want[0] == ["a.png", "b.png"] and got[2] == want[2] == ("x",)
    np.testing.assert_array_equal(got[1], want[1])
