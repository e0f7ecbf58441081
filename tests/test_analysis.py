"""Inside the ViT (paper section 4.5): the maths of rollout, attention distance, position
similarity and filter PCA pinned with numbers; figures and `vitkit analyze` end to end."""

import itertools
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import randomize, tiny
from PIL import Image

from vitkit import analysis, plots
from vitkit.cli import main
from vitkit.images import denormalize, load_image, load_images
from vitkit.report import analyze, figure_names, run_attention


def softmax_attention(batch, heads, tokens, depth=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, tokens, tokens, generator=g).mul(3).softmax(-1) for _ in range(depth)]


def brute_force_mean_pairwise_distance(gh, gw, spacing):
    """Mean over all ordered pairs (self-pairs included) of Euclidean distances on a grid."""
    pts = [(r * spacing, c * spacing) for r in range(gh) for c in range(gw)]
    total = sum(np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in itertools.product(pts, pts))
    return total / len(pts) ** 2


# ---- attention rollout ---------------------------------------------------------------------
@pytest.mark.parametrize("residual", [True, False])
def test_rollout_of_identity_attention_is_identity(residual):
    eye = torch.eye(5).expand(2, 3, 5, 5)  # (B, heads, T, T)
    rollout = analysis.attention_rollout([eye] * 4, residual=residual)
    assert rollout.shape == (2, 5, 5)
    assert torch.allclose(rollout, torch.eye(5).expand(2, 5, 5), atol=1e-6)


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_rows_sum_to_one(residual):
    attn = softmax_attention(batch=3, heads=4, tokens=10, depth=6)
    rollout = analysis.attention_rollout(attn, residual=residual)
    assert torch.allclose(rollout.sum(-1), torch.ones(3, 10), atol=1e-5)
    assert (rollout >= 0).all()
    # Not trivially the identity or uniform: the random attention must show through.
    assert (rollout - torch.eye(10)).abs().max() > 0.05 and rollout.std() > 0.01


def test_rollout_one_layer_is_half_attention_plus_half_identity():
    attn = softmax_attention(batch=2, heads=3, tokens=6)
    expected = 0.5 * attn[0].mean(1).numpy() + 0.5 * np.eye(6)  # rows already sum to 1
    got = analysis.attention_rollout(attn).numpy()
    assert np.allclose(got, expected, atol=1e-6)


def test_rollout_multiplies_later_layers_onto_earlier_ones():
    # Layer 1: every token reads token 0. Layer 2: every token reads token 1, which by then holds
    # token 0's content. So every output traces back to input token 0, not 1.
    T = 4
    to0 = torch.zeros(1, 1, T, T)
    to0[..., 0] = 1
    to1 = torch.zeros(1, 1, T, T)
    to1[..., 1] = 1
    rollout = analysis.attention_rollout([to0, to1], residual=False)
    expected = torch.zeros(1, T, T)
    expected[..., 0] = 1
    assert torch.equal(rollout, expected)


def test_rollout_map_takes_class_row_or_mean_of_patch_rows():
    B, grid = 2, (2, 3)
    rollout = torch.rand(B, 7, 7)
    cls_map = analysis.rollout_map(rollout, grid, "cls")
    assert cls_map.shape == (B, 2, 3)
    assert torch.equal(cls_map[:, 1, 0], rollout[:, 0, 1 + 3])  # patch (row 1, col 0) is token 4
    gap = rollout[:, 1:, 1:]
    gap_map = analysis.rollout_map(gap, grid, "gap")
    assert torch.allclose(gap_map[:, 0, 2], gap[:, :, 2].mean(1))
    with pytest.raises(ValueError, match="grid"):
        analysis.rollout_map(rollout, (3, 3), "cls")


def test_upsampled_map_puts_each_value_at_its_patch_true_centre():
    # Overlapping patches (5 px, stride 3) on a non-square image: centres at 2 + 3 i pixels.
    patch_map = torch.rand(2, 4, 10)
    up = analysis.upsample_map(patch_map, (14, 32), patch_size=5, stride=3)
    assert up.shape == (2, 14, 32)
    assert torch.allclose(up[:, 2::3, 2::3][:, :4, :10], patch_map, atol=1e-5)
    # Between two centres (x = 2 and 5, on the first row of centres): linear in between.
    m = patch_map[:, 0]
    assert torch.allclose(up[:, 2, 3], 2 / 3 * m[:, 0] + 1 / 3 * m[:, 1], atol=1e-5)
    assert torch.allclose(up[:, 2, 4], 1 / 3 * m[:, 0] + 2 / 3 * m[:, 1], atol=1e-5)
    assert torch.allclose(up[:, 0, 0], m[:, 0], atol=1e-5)  # outside the centres: the edge value


# ---- mean attention distance -----------------------------------------------------------------
def test_uniform_attention_distance_is_the_mean_pairwise_distance_of_the_grid():
    model = tiny(img_size=(24, 40), patch_size=8)  # a 3 x 5 grid, class token first
    centers = analysis.model_patch_centers(model)
    T = 1 + 15
    uniform = [torch.full((2, 3, T, T), 1 / T)] * 2  # cls keys included, then dropped
    got = analysis.mean_attention_distance(uniform, centers, num_prefix=1)
    expected = brute_force_mean_pairwise_distance(3, 5, spacing=8)
    assert got.shape == (2, 3)
    assert np.allclose(got.numpy(), expected, rtol=1e-5)
    assert analysis.uniform_attention_distance(centers) == pytest.approx(expected, rel=1e-9)
    assert 10 < expected < 20  # sanity of the brute force itself: 3x5 grid of 8 px steps


def test_attention_to_itself_has_zero_distance_even_with_class_token_mass():
    n = 9
    attn = torch.zeros(1, 2, 1 + n, 1 + n)
    attn[..., 0] = 0.5  # half of every query's mass on the class token...
    attn[..., 1:, 1:] += 0.5 * torch.eye(n)  # ...the rest on itself
    attn[..., 0, 0] = 1.0
    centers = analysis.model_patch_centers(tiny(img_size=24, patch_size=8))
    assert torch.equal(analysis.mean_attention_distance([attn], centers, 1), torch.zeros(1, 2))


def test_overlapping_patches_measure_distance_between_true_centres():
    model = tiny(img_size=32, patch_size=8, stride=4, pool="gap")  # 7 x 7 overlapping patches
    gh, gw = model.grid
    assert (gh, gw) == (7, 7)
    n = gh * gw
    # Each patch attends to its right neighbour (the last column to its left one): one stride.
    attn = torch.zeros(1, 1, n, n)
    for q in range(n):
        r, c = divmod(q, gw)
        attn[0, 0, q, r * gw + (c + 1 if c + 1 < gw else c - 1)] = 1
    centers = analysis.model_patch_centers(model)
    got = analysis.mean_attention_distance([attn], centers, num_prefix=0)
    assert got.item() == pytest.approx(4.0)  # the stride, not the patch size
    uniform = analysis.mean_attention_distance([torch.full((1, 1, n, n), 1 / n)], centers, 0)
    assert uniform.item() == pytest.approx(brute_force_mean_pairwise_distance(7, 7, spacing=4), rel=1e-5)


def test_attention_distance_is_the_same_one_image_at_a_time_or_batched():
    model = randomize(tiny(patch_size=8)).eval()
    x = torch.randn(5, 3, 32, 32)
    dist_batched, maps_batched = run_attention(model, x, batch_size=8)
    dist_single, maps_single = run_attention(model, x, batch_size=1)
    assert dist_batched.shape == (5, 2, 2) and maps_batched.shape == (5, 4, 4)
    assert torch.allclose(dist_batched, dist_single, atol=1e-4)
    assert torch.allclose(maps_batched, maps_single, atol=1e-5)
    assert dist_batched.std(dim=0).max() > 1e-3  # images differ, so do their distances


# ---- position embeddings --------------------------------------------------------------------
def test_sincos_position_similarity_peaks_on_the_diagonal_and_falls_with_distance():
    model = tiny(img_size=64, patch_size=8, pos_embed="sincos", embed_dim=64)  # 8 x 8 grid
    sim = analysis.position_similarity(model)
    n = 64
    assert sim.shape == (n, n)
    assert torch.allclose(sim.diagonal(), torch.ones(n), atol=1e-5)
    off = sim - 2 * torch.eye(n)
    assert (off.max(dim=1).values < 1 - 1e-3).all()  # every row peaks at itself, strictly
    # Closed form: cos-sim = (sum_k cos(dx w_k) + sum_k cos(dy w_k)) / (dim / 2).
    omega = 1 / 10_000 ** (np.arange(16) / 15)
    grid = np.array([(r, c) for r in range(8) for c in range(8)], dtype=np.float64)
    d = grid[:, None, :] - grid[None, :, :]
    closed = (np.cos(d[..., 1, None] * omega).sum(-1) + np.cos(d[..., 0, None] * omega).sum(-1)) / 32
    assert np.allclose(sim.numpy(), closed, atol=1e-5)
    # Falls with grid distance along rows and columns, from every position, out to 3 patches
    # (further out the fastest frequency, 1 rad per patch, wraps round and the fall is not monotone).
    s = sim.reshape(8, 8, 8, 8)
    for r, c in itertools.product(range(8), range(8)):
        row = [s[r, c, r, c + k].item() for k in range(4) if c + k < 8]
        col = [s[r, c, r + k, c].item() for k in range(4) if r + k < 8]
        assert all(a > b for a, b in itertools.pairwise(row)) and all(a > b for a, b in itertools.pairwise(col))


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_position_similarity_leaves_out_the_class_token(pool):
    model = tiny(img_size=16, patch_size=8, pool=pool, embed_dim=8, num_heads=2)  # 4 patches
    prefix = model.config.num_prefix_tokens
    with torch.no_grad():
        model.pos_embed.zero_()
        model.pos_embed[0, prefix:, :4] = 3 * torch.eye(4)  # orthogonal patch positions
        if prefix:
            model.pos_embed[0, 0, :4] = 1.0  # a class position that would break orthogonality
    assert torch.allclose(analysis.position_similarity(model), torch.eye(4), atol=1e-6)


def test_no_position_embedding_is_a_clear_error():
    with pytest.raises(ValueError, match="no position embeddings"):
        analysis.position_similarity(tiny(pos_embed="none"))


# ---- embedding filters ----------------------------------------------------------------------
def test_filter_pca_recovers_a_planted_two_dimensional_subspace():
    g = torch.Generator().manual_seed(1)
    basis = torch.linalg.qr(torch.randn(48, 2, generator=g, dtype=torch.float64))[0].T  # (2, 3*4*4)
    coeffs = torch.randn(64, 2, generator=g, dtype=torch.float64) * torch.tensor([5.0, 2.0])
    offset = torch.randn(1, 48, generator=g, dtype=torch.float64)  # the mean is removed first
    weight = (coeffs @ basis + offset).reshape(64, 3, 4, 4)
    comps, ratio = analysis.filter_pca(weight, k=28)
    assert comps.shape == (28, 3, 4, 4) and ratio.shape == (28,)
    flat = comps.reshape(28, 48)
    assert torch.allclose(flat @ flat.T, torch.eye(28, dtype=flat.dtype), atol=1e-8)  # orthonormal
    proj = flat[:2] @ basis.T  # the top two span the planted plane: a 2x2 rotation
    assert torch.allclose(proj @ proj.T, torch.eye(2, dtype=flat.dtype), atol=1e-8)
    assert ratio[:2].sum() == pytest.approx(1.0, abs=1e-9) and ratio[0] > ratio[1]
    few = analysis.filter_pca(weight[:5], k=28)[0]  # only 5 filters: at most 5 components
    assert few.shape[0] == 5


def test_embedding_filters_have_the_model_channels():
    assert analysis.embedding_filters(tiny(patch_size=8), k=6).shape == (6, 3, 8, 8)
    assert analysis.embedding_filters(tiny(patch_size=4, in_chans=1), k=28).shape == (16, 1, 4, 4)


# ---- figures ---------------------------------------------------------------------------------
def assert_labelled(ax):
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), (ax.get_title(), ax.get_xlabel())


def test_every_figure_has_a_title_and_axis_labels():
    rgb = plots.embedding_filters_figure(torch.randn(28, 3, 8, 8), torch.full((28,), 0.02))
    gray = plots.embedding_filters_figure(torch.randn(16, 1, 4, 4))
    assert rgb.axes[0].images[0].get_array().ndim == 3  # RGB tiles
    assert gray.axes[0].images[0].get_array().ndim == 2  # one channel: grayscale
    sim = plots.position_similarity_figure(torch.rand(12, 12), (3, 4))
    dist = plots.attention_distance_figure(torch.rand(4, 3) * 20, uniform=12.0)
    overlay = plots.attention_overlay_figure(torch.rand(3, 32, 32), torch.rand(32, 32), "cat.png")
    for fig in (rgb, gray, sim):
        assert_labelled(fig.axes[0])
    assert "principal components" in rgb.axes[0].get_title()
    assert sim.axes[0].get_xlabel() == "input patch column" and sim.axes[0].get_ylabel() == "input patch row"
    ax = dist.axes[0]
    assert_labelled(ax)
    assert "pixels" in ax.get_ylabel() and "depth" in ax.get_xlabel()
    assert sum(len(c.get_offsets()) for c in ax.collections) == 12  # one dot per head per layer
    image_axes = [a for a in overlay.axes if a.images]
    assert len(image_axes) == 2
    for a in image_axes:
        assert_labelled(a)
    assert "cat.png" in overlay.get_suptitle()


# ---- images ----------------------------------------------------------------------------------
def test_images_are_turned_upright_converted_resized_and_normalised(tmp_path):
    # Left half red, right half blue, stored sideways with EXIF orientation 6 (rotate 90 cw).
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20, 0] = 255
    arr[:, 20:, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "side.jpg", exif=exif, quality=95)
    x = load_image(tmp_path / "side.jpg", (16, 8), in_chans=3)
    assert x.shape == (3, 16, 8)
    assert x[0, :6].mean() > 0.8 and x[2, :6].mean() < -0.8  # top is red after rotating
    assert x[2, -6:].mean() > 0.8 and x[0, -6:].mean() < -0.8  # bottom is blue
    gray = load_image(tmp_path / "side.jpg", (16, 8), in_chans=1, mean=0.2, std=0.1)
    assert gray.shape == (1, 16, 8)
    # Transparent pixels become white; white with mean 0.5 / std 0.5 is exactly 1.
    Image.new("RGBA", (9, 9), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert torch.allclose(load_image(tmp_path / "clear.png", (4, 4)), torch.ones(3, 4, 4))
    assert torch.allclose(denormalize(torch.ones(3, 2, 2)), torch.ones(3, 2, 2))
    with pytest.raises(ValueError, match="channel"):
        load_image(tmp_path / "clear.png", (4, 4), mean=(0.5, 0.5))


def test_unreadable_files_become_messages_and_the_rest_load(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "ok.png")
    batch = load_images([tmp_path / "notes.png", tmp_path / "ok.png", tmp_path / "gone.png"], (8, 8))
    assert batch.pixels.shape == (1, 3, 8, 8) and batch.paths == [tmp_path / "ok.png"]
    assert len(batch.errors) == 2 and "notes.png" in batch.errors[0] and "gone.png" in batch.errors[1]


def test_figure_names_stay_unique_for_files_with_the_same_stem(tmp_path):
    paths = [tmp_path / "a" / "cat.jpg", tmp_path / "b" / "cat.jpg", tmp_path / "cat.png"]
    assert figure_names(paths) == ["attention_cat.png", "attention_cat_2.png", "attention_cat_3.png"]


# ---- end to end --------------------------------------------------------------------------------
def write_test_images(folder, size=(48, 40)):
    """A PNG and a JPEG with structure (gradients and a bright square) so figures are not flat."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)
    a[10:20, 12:24] = 255
    b = 255 - a
    Image.fromarray(a).save(folder / "gradient.png")
    Image.fromarray(b).save(folder / "inverse.jpg", quality=90)
    return [folder / "gradient.png", folder / "inverse.jpg"]


def assert_real_png(path, min_bytes=5_000):
    assert path.is_file() and path.stat().st_size > min_bytes, path
    pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels.std() > 10, path


def test_cli_analyze_writes_all_figures_and_the_numbers(tmp_path):
    model = randomize(tiny(patch_size=8))
    model.save(tmp_path / "model")
    images = write_test_images(tmp_path / "imgs")
    (tmp_path / "readme.txt").write_text("not an image")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "model"), "--images", str(images[0]),
                                       str(images[1]), str(tmp_path / "readme.txt"),
                                       "--out", str(out), "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "readme.txt" in error_lines[0]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert reported == summary
    for name in ("embedding_filters", "position_similarity", "attention_distance",
                 "attention_gradient", "attention_inverse"):
        assert_real_png(out / f"{name}.png")
    dist = np.array(summary["mean_attention_distance"])
    assert dist.shape == (2, 2) and (dist > 0).all() and (dist < 32 * np.sqrt(2)).all()
    sim = np.array(summary["position_similarity"])
    assert sim.shape == (16, 16) and np.allclose(np.diag(sim), 1, atol=1e-4)
    assert len(summary["errors"]) == 1 and len(summary["images"]) == 2
    # The numbers are the model's: recompute the distance straight from the attention weights.
    x = torch.stack([load_image(p, (32, 32)) for p in images])
    with torch.no_grad():
        _, attn = model.eval().forward_with_attention(x)
    direct = analysis.mean_attention_distance(attn, analysis.model_patch_centers(model), 1)
    assert np.allclose(dist, direct.numpy(), atol=1e-4)


def test_one_channel_gap_model_with_overlapping_patches_and_a_folder_of_images(tmp_path):
    model = randomize(tiny(img_size=28, patch_size=8, stride=4, in_chans=1, pool="gap",
                           pos_embed="sincos"))
    model.train()
    write_test_images(tmp_path / "imgs")
    summary = analyze(model, [tmp_path / "imgs"], tmp_path / "out", device="cpu")
    assert model.training  # put back as it was
    assert len(summary["images"]) == 2 and summary["errors"] == []
    assert summary["model"]["grid"] == [6, 6]
    assert np.array(summary["mean_attention_distance"]).shape == (2, 2)
    assert np.array(summary["position_similarity"]).shape == (36, 36)
    assert np.array(summary["rollout_maps"]).shape == (2, 6, 6)
    for p in ["embedding_filters.png", "position_similarity.png", "attention_distance.png",
              "attention_gradient.png", "attention_inverse.png"]:
        assert_real_png(tmp_path / "out" / p)


def test_a_model_without_position_embeddings_skips_that_figure_with_a_note(tmp_path):
    images = write_test_images(tmp_path / "imgs")
    summary = analyze(tiny(pos_embed="none", patch_size=8), images[:1], tmp_path / "out")
    assert summary["position_similarity"] is None
    assert "no position embeddings" in summary["position_similarity_note"]
    assert not (tmp_path / "out" / "position_similarity.png").exists()
    assert (tmp_path / "out" / "attention_distance.png").is_file()


def test_cli_with_no_readable_image_fails_with_one_line_per_file(tmp_path):
    tiny(patch_size=8).save(tmp_path / "model")
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8 truncated")
    result = CliRunner().invoke(main, ["analyze", str(tmp_path / "model"), "--images",
                                       str(tmp_path / "a.jpg"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "a.jpg" in result.stderr and "none of the 1 file(s)" in result.stderr
    assert "Traceback" not in result.output
