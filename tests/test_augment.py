"""Augmentation: shapes, soft targets, exact replay from the torch RNG, crops, flips, ops against PIL."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance, ImageOps

from vitkit import augment_ops as ops
from vitkit.augment import (AugmentConfig, BatchAugment, pad_crop, preprocess_eval, smooth_targets,
                            soft_target_cross_entropy)

EVERYTHING = AugmentConfig(crop="rrc", auto="randaugment", mixup=0.8, cutmix=1.0, erase=0.5,
                           label_smoothing=0.1)
PLAIN = dict(mean=(0.0,), std=(1.0,))  # normalisation off: outputs are pixel values in [0, 1]


def batch(b=16, c=3, h=12, w=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, c, h, w), generator=g, dtype=torch.uint8), torch.arange(b) % 10


@pytest.mark.parametrize("config", [
    AugmentConfig(), AugmentConfig(crop="rrc"), AugmentConfig(crop="none", hflip=False),
    AugmentConfig(auto="trivialaugment", pad_mode="zero"), EVERYTHING,
], ids=["light", "rrc", "none", "trivial", "everything"])
@pytest.mark.parametrize("channels, out_size", [(1, (16, 16)), (3, (12, 12)), (3, (8, 10))])
def test_output_shapes_dtypes_and_targets(config, channels, out_size):
    images, labels = batch(c=channels)
    aug = BatchAugment(config, out_size, (0.5,) * channels, (0.25,) * channels, num_classes=10)
    x, t = aug(images, labels)
    assert x.shape == (16, channels, *out_size) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert t.shape == (16, 10) and t.dtype == torch.float32
    assert torch.allclose(t.sum(1), torch.ones(16)) and (t >= 0).all()


def test_label_smoothing_values_without_mixing():
    aug = BatchAugment(AugmentConfig(label_smoothing=0.1), 12, (0.5,) * 3, (0.25,) * 3, num_classes=4)
    _, t = aug(*batch(b=4))
    assert torch.allclose(t, torch.eye(4) * 0.9 + 0.025)


def test_restoring_the_rng_state_replays_the_augmentation_exactly():
    images, labels = batch(b=32)
    aug = BatchAugment(EVERYTHING, (16, 16), (0.5,) * 3, (0.25,) * 3, num_classes=10)
    for cfg in (EVERYTHING, AugmentConfig(auto="trivialaugment", erase=1.0, mixup=0.4)):
        aug.config = cfg
        state = torch.get_rng_state()
        random.seed(1), np.random.seed(1)
        x1, t1 = aug(images, labels)
        x_next, _ = aug(images, labels)
        torch.set_rng_state(state)
        random.seed(2), np.random.seed(2)  # Python's and numpy's RNGs must play no part
        x2, t2 = aug(images, labels)
        assert torch.equal(x1, x2) and torch.equal(t1, t2)
        assert not torch.equal(x1, x_next)  # ... and it is random at all


def test_zero_pad_crop_is_an_integer_shift_within_the_padding():
    img = torch.arange(1, 1 + 7 * 9, dtype=torch.float32).view(1, 1, 7, 9).expand(64, 1, 7, 9)
    out = pad_crop(img, 2, "zero")
    padded = F.pad(img[0], (2, 2, 2, 2))
    shifts = set()
    for o in out:
        found = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(o, padded[:, dy:dy + 7, dx:dx + 9])]
        assert len(found) == 1
        shifts.add(found[0])
        assert (o > 0).sum() >= 5 * 7  # at most `pad` rows and columns of padding come in
    assert len(shifts) > 10


def test_reflect_pad_crop_shows_only_original_content():
    img = torch.arange(1, 1 + 8 * 8, dtype=torch.float32).view(1, 1, 8, 8).expand(32, 1, 8, 8)
    out = pad_crop(img, 3, "reflect")
    padded = F.pad(img[:1], (3, 3, 3, 3), mode="reflect")[0]
    for o in out:
        assert any(torch.equal(o, padded[:, dy:dy + 8, dx:dx + 8]) for dy in range(7) for dx in range(7))
    assert set(out.unique().tolist()) <= set(img.unique().tolist())


def test_reflect_pad_larger_than_the_image_is_a_clear_error():
    aug = BatchAugment(AugmentConfig(pad=8), 8, **PLAIN, num_classes=10)
    with pytest.raises(ValueError, match="pad_mode='zero'"):
        aug(*batch(c=1, h=8, w=8))


def test_flip_flips_about_half_the_images():
    one = torch.arange(4 * 6, dtype=torch.uint8).view(1, 1, 4, 6) * 10
    images = one.expand(400, 1, 4, 6).contiguous()
    aug = BatchAugment(AugmentConfig(crop="none", hflip=True), (4, 6), **PLAIN, num_classes=2)
    x, _ = aug(images, torch.zeros(400, dtype=torch.int64))
    straight = one.float() / 255
    flipped = (x == straight.flip(3)).flatten(1).all(1)
    assert ((x == straight).flatten(1).all(1) | flipped).all()
    assert 150 < int(flipped.sum()) < 250


def test_mixup_images_and_targets_mix_with_the_same_weight():
    values = torch.tensor([0, 200, 40, 255], dtype=torch.uint8)
    images = values.view(4, 1, 1, 1).expand(4, 1, 5, 5).contiguous()
    aug = BatchAugment(AugmentConfig(crop="none", hflip=False, mixup=1.0), (5, 5), **PLAIN, num_classes=4)
    x, t = aug(images, torch.arange(4))
    lam = t[0, 0]  # image 0 mixes with its mirror, image 3
    assert 0 < lam < 1 and torch.isclose(t[0, 3], 1 - lam)
    expected = lam * values.float() / 255 + (1 - lam) * values.flip(0).float() / 255
    assert torch.allclose(x[:, 0, 0, 0], expected, atol=1e-6)
    assert torch.allclose(x.amax(dim=(1, 2, 3)), x.amin(dim=(1, 2, 3)))  # mixed everywhere alike


def test_cutmix_target_weight_equals_the_pasted_area():
    images = torch.tensor([0, 255] * 4, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 1, 20, 20).contiguous()
    aug = BatchAugment(AugmentConfig(crop="none", hflip=False, cutmix=1.0), (20, 20), **PLAIN, num_classes=8)
    seen = []
    for _ in range(10):
        x, t = aug(images, torch.arange(8))
        pasted = (x[0] == 1.0).float().mean()  # image 0 is black; its partner (image 7) is white
        assert torch.isclose(t[0, 7], pasted) and torch.isclose(t[0, 0], 1 - pasted)
        seen.append(float(pasted))
    assert max(seen) > 0


def test_mix_prob_zero_never_mixes():
    aug = BatchAugment(AugmentConfig(mixup=1.0, cutmix=1.0, mix_prob=0.0), 12, (0.5,) * 3, (0.2,) * 3, 10)
    _, t = aug(*batch())
    assert torch.equal(t, smooth_targets(torch.arange(16) % 10, 10))


def test_random_erasing_replaces_one_rectangle_per_image():
    images = torch.full((64, 1, 20, 20), 128, dtype=torch.uint8)
    aug = BatchAugment(AugmentConfig(crop="none", hflip=False, erase=1.0), 20, mean=(128 / 255,), std=(1.0,),
                       num_classes=2)
    x, _ = aug(images, torch.zeros(64, dtype=torch.int64))
    for img in x[:, 0]:
        changed = img != 0
        rows, cols = changed.any(1).nonzero(), changed.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert 0.015 < h * w / 400 < 0.36  # one box of 2%..33% of the image (rounded)
        assert changed.sum() >= 0.9 * h * w  # filled with noise (a noise value of exactly 0 is rare)


def test_eval_preprocessing_is_deterministic_resizes_and_normalises():
    images = torch.full((2, 3, 8, 8), 51, dtype=torch.uint8)
    state = torch.get_rng_state()
    a = preprocess_eval(images, 16, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    b = preprocess_eval(images, (16, 16), (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))
    assert torch.equal(state, torch.get_rng_state()) and torch.equal(a, b)
    assert a.shape == (2, 3, 16, 16)
    expected = (torch.tensor([0.2, 0.2, 0.2]) - torch.tensor([0.1, 0.2, 0.3])) / 0.5
    assert torch.allclose(a, expected.view(1, 3, 1, 1).expand_as(a), atol=1e-6)
    assert torch.equal(preprocess_eval(images, 8, (0.0,) * 3, (1.0,) * 3), images.float() / 255)


def test_soft_target_cross_entropy_equals_torch_cross_entropy():
    logits, labels = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.allclose(soft_target_cross_entropy(logits, smooth_targets(labels, 5)),
                          F.cross_entropy(logits, labels))
    assert torch.allclose(soft_target_cross_entropy(logits, smooth_targets(labels, 5, 0.2)),
                          F.cross_entropy(logits, labels, label_smoothing=0.2))


def test_config_round_trip_and_validation():
    cfg = AugmentConfig(crop="rrc", rrc_scale=[0.5, 1.0], auto="trivialaugment", mixup=0.2)
    assert cfg.rrc_scale == (0.5, 1.0) and AugmentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="crop must be one of"):
        AugmentConfig(crop="random")
    with pytest.raises(ValueError, match="label_smoothing"):
        AugmentConfig(label_smoothing=1.0)
    with pytest.raises(TypeError, match="unknown augment field"):
        AugmentConfig.from_dict({"cutout": 1})


# ---------------------------------------------------------------- RandAugment / TrivialAugment ops

def _apply(name: str, x: torch.Tensor, fraction: float, sign: float = 1.0, space: str = "standard"):
    b = x.shape[0]
    op = torch.full((b,), ops.op_index(name))
    fill = torch.zeros(1, x.shape[1], 1, 1)
    return ops.apply_ops(x, op, torch.full((b,), fraction), torch.full((b,), sign), fill, space)


PIL_EQUIVALENTS = [  # (op, magnitude fraction, sign, PIL function, tolerance in 8-bit levels)
    ("equalize", 0.0, 1, ImageOps.equalize, 0),
    ("auto_contrast", 0.0, 1, ImageOps.autocontrast, 1),
    ("posterize", 1.0, 1, lambda im: ImageOps.posterize(im, 4), 0),
    ("solarize", 0.5, 1, lambda im: ImageOps.solarize(im, 128), 0),
    ("sharpness", 1.0, 1, lambda im: ImageEnhance.Sharpness(im).enhance(1.9), 1.5),
    ("contrast", 1.0, 1, lambda im: ImageEnhance.Contrast(im).enhance(1.9), 1.5),
    ("brightness", 0.5, 1, lambda im: ImageEnhance.Brightness(im).enhance(1.45), 1),
    ("color", 1.0, 1, lambda im: ImageEnhance.Color(im).enhance(1.9), 1.5),
    ("color", 1.0, -1, lambda im: ImageEnhance.Color(im).enhance(0.1), 1.5),
]


@pytest.mark.parametrize("name, fraction, sign, pil_op, tol", PIL_EQUIVALENTS)
def test_intensity_ops_match_pil(name, fraction, sign, pil_op, tol):
    u, _ = batch(b=4, h=16, w=16)
    u = u // 2 + 40  # not already full range, so auto_contrast and equalize have work to do
    ours = _apply(name, u.float() / 255, fraction, sign) * 255
    pil = [np.asarray(pil_op(Image.fromarray(a.permute(1, 2, 0).numpy()))) for a in u]
    ref = torch.tensor(np.stack(pil), dtype=torch.float32).permute(0, 3, 1, 2)
    assert (ours - ref).abs().max() <= tol + 1e-3


@pytest.mark.parametrize("pixels", [[[77] * 4] * 4, [[0, 255] * 4] * 3, [[10, 10, 10, 200]] * 3,
                                    [[0, 60, 120, 180, 60, 0]] * 2])
def test_equalize_matches_pil_on_flat_and_few_level_images(pixels):
    a = np.array(pixels, np.uint8)
    ours = ops.equalize(torch.from_numpy(a).float().view(1, 1, *a.shape) / 255)[0, 0] * 255
    ref = np.asarray(ImageOps.equalize(Image.fromarray(a)))
    assert torch.equal(ours.round(), torch.tensor(ref, dtype=torch.float32))


def test_geometric_ops_move_pixels_as_expected():
    x, _ = batch(b=2, h=16, w=16)
    x = x.float() / 255
    # wide space: rotate 135 degrees at fraction 1, so 2/3 is a quarter turn; sign picks the direction
    assert torch.allclose(_apply("rotate", x, 2 / 3, 1.0, "wide"), torch.rot90(x, 1, (2, 3)), atol=1e-5)
    assert torch.allclose(_apply("rotate", x, 2 / 3, -1.0, "wide"), torch.rot90(x, -1, (2, 3)), atol=1e-5)
    moved = _apply("translate_x", x, 0.25, 1.0, "wide")  # 0.25 * 0.5 * 16 = 2 pixels right
    assert torch.allclose(moved[..., 2:], x[..., :-2], atol=1e-5) and (moved[..., :2] == 0).all()
    down = _apply("translate_y", x, 0.25, -1.0, "wide")  # 2 pixels up
    assert torch.allclose(down[..., :-2, :], x[..., 2:, :], atol=1e-5)


@pytest.mark.parametrize("name", ops.OPS)
def test_every_op_works_on_one_channel_and_keeps_the_range(name):
    x = torch.rand(3, 1, 10, 10)
    y = _apply(name, x, 0.7)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    if name in ("identity", "color"):  # a gray image has no colour to change
        assert torch.equal(y, x)


def test_each_image_draws_its_own_op():
    one = torch.rand(1, 3, 12, 12)
    x = one.expand(256, 3, 12, 12)
    fill = torch.full((1, 3, 1, 1), 0.5)
    for out in (ops.rand_augment(x, 1, 9, fill), ops.trivial_augment(x, fill)):
        unchanged = (out == one).flatten(1).all(1)
        assert 0 < int(unchanged.sum()) < 128  # the identity op (and only some others) leave an image alone
        assert len({tuple(o.flatten()[:8].tolist()) for o in out}) > 20


def test_compiled_image_ops_replay_from_the_rng_state_and_augment():
    config = AugmentConfig(crop="pad", pad=2, hflip=True, auto="trivialaugment", erase=0.5, label_smoothing=0.1)
    aug = BatchAugment(config, (8, 8), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 4).compile_image_ops()
    images = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    torch.manual_seed(3)
    x1, t1 = aug(images, labels)
    torch.manual_seed(3)
    x2, t2 = aug(images, labels)
    assert torch.equal(x1, x2) and torch.equal(t1, t2), "a restored RNG state must replay the augmentation"
    plain = (images.float() / 255 - 0.5) / 0.25
    assert x1.shape == plain.shape and torch.isfinite(x1).all()
    assert (x1 - plain).abs().amax(dim=(1, 2, 3)).gt(1e-3).float().mean() > 0.5, "most images must change"
    assert torch.allclose(t1.sum(1), torch.ones(16)) and t1.max() == pytest.approx(0.925)
