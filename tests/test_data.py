"""Data: digits, CIFAR (safe unpickling), image folders with awkward files, splits, loaders."""

import io
import os
import pickle
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vitkit.data import (ArraySplit, DataError, DataWarning, ImageFolderDataset, load_data, make_loader,
                         parse_spec)
from vitkit.data.images import load_image, probe
from vitkit.data.splits import stratified_split


# ---------------------------------------------------------------- splits

def test_stratified_split_partitions_and_keeps_class_proportions():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    kept, held = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(100))
    assert torch.bincount(labels[held]).tolist() == [10, 6, 4]
    again = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(held, again[1])
    assert not torch.equal(held, stratified_split(labels, 0.2, seed=4)[1])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=200), st.floats(0.0, 0.95), st.integers(0, 2**31))
def test_stratified_split_shares_are_within_one_of_the_fraction(labels, fraction, seed):
    labels = torch.tensor(labels)
    kept, held = stratified_split(labels, fraction, seed)
    assert torch.equal(torch.sort(torch.cat([kept, held])).values, torch.arange(len(labels)))
    for c in torch.unique(labels):
        n, h = int((labels == c).sum()), int((labels[held] == c).sum())
        assert abs(h - fraction * n) < 1 and h <= n - 1  # every class keeps a training example


def test_stratified_split_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    stratified_split(torch.arange(40) % 4, 0.25, seed=1)
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------- digits

def test_digits_shapes_sizes_and_value_range():
    b = load_data("digits")
    assert (b.name, b.num_classes, b.in_chans, b.image_size, b.in_memory) == ("digits", 10, 1, (8, 8), True)
    assert b.class_names == [str(d) for d in range(10)]
    assert b.split_sizes() == {"train": 1294, "val": 144, "test": 359}  # 1797: 20% test, then 10% val
    for split in (b.train, b.val, b.test):
        assert split.images.dtype == torch.uint8 and split.images.shape[1:] == (1, 8, 8)
        assert split.labels.dtype == torch.int64
    assert int(b.train.images.max()) == 255 and len(torch.unique(b.train.images)) == 17  # levels 0..16
    assert 0.2 < b.mean[0] < 0.4 and 0.3 < b.std[0] < 0.45


def _rows(split: ArraySplit) -> Counter:
    return Counter((img.numpy().tobytes(), int(y)) for img, y in zip(split.images, split.labels, strict=True))


def test_digits_splits_partition_the_whole_set():
    from vitkit.data.digits import digits_arrays

    images, labels = digits_arrays()
    b = load_data("digits", seed=5)
    assert _rows(b.train) + _rows(b.val) + _rows(b.test) == _rows(ArraySplit(images, labels))


def test_digits_test_split_is_fixed_but_val_follows_the_run_seed():
    a, b, a2 = load_data("digits", seed=1), load_data("digits", seed=2), load_data("digits", seed=1)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.val.images, b.val.images)
    assert torch.equal(a.val.images, a2.val.images) and torch.equal(a.train.labels, a2.train.labels)
    assert a.mean == b.mean  # statistics of the whole training split, not of the seed's share


def test_val_fraction_zero_trains_on_the_whole_training_split():
    b = load_data("digits", val_fraction=0.0)
    assert b.val is None and len(b.train) == 1797 - 359


def test_classes_subset_relabels_in_the_given_order():
    full = load_data("digits")
    sub = load_data("digits", classes=[5, 6, 7, 8, 9])
    assert sub.num_classes == 5 and sub.class_names == ["5", "6", "7", "8", "9"]
    assert sorted(torch.unique(sub.train.labels).tolist()) == [0, 1, 2, 3, 4]
    for new, old in enumerate([5, 6, 7, 8, 9]):  # the fixed test split: same images, new ids
        assert torch.equal(sub.test.images[sub.test.labels == new], full.test.images[full.test.labels == old])
    rev = load_data("digits", classes=[9, 0])
    assert rev.class_names == ["9", "0"]
    assert torch.equal(rev.test.images[rev.test.labels == 0], full.test.images[full.test.labels == 9])
    assert sub.mean == full.mean


@pytest.mark.parametrize("classes, message", [([3, 10], "out of range"), ([1, 1], "repeats"), ([4], "two")])
def test_bad_class_subsets_are_clear_errors(classes, message):
    with pytest.raises(DataError, match=message):
        load_data("digits", classes=classes)


@pytest.mark.parametrize("spec, message", [("mnist", "unknown data spec"), ("cifar10", "needs a folder"),
                                           ("digits:/x", "takes no path")])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(DataError, match=message):
        parse_spec(spec)


def test_val_fraction_out_of_range_is_an_error():
    with pytest.raises(DataError, match="val_fraction"):
        load_data("digits", val_fraction=1.0)


# ---------------------------------------------------------------- CIFAR

def _cifar_images(n: int, offset: int) -> np.ndarray:
    return ((np.arange(n * 3072, dtype=np.int64).reshape(n, 3072) + offset) % 251).astype(np.uint8)


def _dump(path: Path, obj, protocol: int) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def write_cifar10(root: Path, per_batch: int = 4, protocol: int = 3) -> Path:
    """The official layout: bytes keys, uint8 (N, 3072) rows, label lists (values are synthetic)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                  "ship", "truck")]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch}, protocol)
    for i in range(1, 6):
        _dump(folder / f"data_batch_{i}", {b"batch_label": b"training batch",
                                           b"data": _cifar_images(per_batch, i),
                                           b"labels": [(i + k) % 10 for k in range(per_batch)],
                                           b"filenames": [b"x.png"] * per_batch}, protocol)
    _dump(folder / "test_batch", {b"batch_label": b"testing batch", b"data": _cifar_images(per_batch, 99),
                                  b"labels": [k % 10 for k in range(per_batch)]}, protocol)
    return folder


@pytest.mark.parametrize("protocol", [2, 3, 4])
@pytest.mark.parametrize("give_parent", [True, False])
def test_cifar10_reads_the_python_layout_from_folder_or_parent(tmp_path, protocol, give_parent):
    folder = write_cifar10(tmp_path, protocol=protocol)
    b = load_data(f"cifar10:{tmp_path if give_parent else folder}", val_fraction=0.0)
    assert (b.num_classes, b.in_chans, b.image_size) == (10, 3, (32, 32))
    assert b.class_names[:2] == ["airplane", "automobile"]
    assert b.split_sizes() == {"train": 20, "val": 0, "test": 4}
    # row layout: 1024 red values, then green, then blue, each row-major
    expected = torch.from_numpy(_cifar_images(4, 1)).view(4, 3, 32, 32)
    assert torch.equal(b.train.images[:4], expected)
    assert b.train.labels[:4].tolist() == [1, 2, 3, 4]


def test_cifar100_uses_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _dump(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                            b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, 3)
    for name, n in (("train", 6), ("test", 3)):
        _dump(folder / name, {b"data": _cifar_images(n, 0), b"fine_labels": [50 + k for k in range(n)],
                              b"coarse_labels": [k for k in range(n)]}, 3)
    b = load_data(f"cifar100:{tmp_path}", val_fraction=0.0)
    assert b.num_classes == 100 and b.class_names[50] == "f50"
    assert b.train.labels.tolist() == [50, 51, 52, 53, 54, 55]


class RunsAShellCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    folder = write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    _dump(folder / "data_batch_3", {b"data": RunsAShellCommand(marker), b"labels": []}, 2)
    with pytest.raises(DataError, match=r"refusing to load '(posix|os|nt)\.system'.*nothing in it was run"):
        load_data(f"cifar10:{tmp_path}")
    assert not marker.exists()
    # the same pickle through plain pickle.load does run it: the test above can fail
    with open(folder / "data_batch_3", "rb") as f:
        pickle.load(f)
    assert marker.exists()


def test_cifar_missing_folder_says_where_to_get_it(tmp_path):
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_data(f"cifar10:{tmp_path}")


def test_cifar_wrong_array_shape_is_a_clear_error(tmp_path):
    folder = write_cifar10(tmp_path)
    _dump(folder / "test_batch", {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 3)
    with pytest.raises(DataError, match=r"uint8 \(N, 3072\)"):
        load_data(f"cifar10:{folder}")


# ---------------------------------------------------------------- image files

def _save(im: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **kw)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40 wide x 20 high, red top-left quadrant, blue elsewhere; EXIF orientation 6 (turn 90° cw)."""
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :, 2] = 255
    a[:10, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(Image.fromarray(a), path, quality=95, exif=exif)


def test_exif_orientation_is_applied(tmp_path):
    # displayed 20 wide and 40 high: ask for exactly that, so nothing is cropped
    x = load_image(str(exif_rotated_jpeg(tmp_path / "r.jpg")), (40, 20), 3).float()
    red = x[0] > 128
    # turned 90° clockwise, the stored top-left quadrant lands top-right
    assert red[2:18, 12:18].all() and not red[22:38, :].any() and not red[2:18, 2:8].any()


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[1000, 1000, 60000, 60000]] * 4, dtype=np.uint16)
    path = _save(Image.fromarray(a), tmp_path / "16.png")
    assert Image.open(path).mode in ("I;16", "I")
    x = load_image(str(path), (4, 4), 1)
    assert x[0, :, 0].tolist() == [4] * 4 and x[0, :, 3].tolist() == [233] * 4  # 1000/257, 60000/257


def test_alpha_is_composited_over_white_and_palettes_keep_their_colours(tmp_path):
    a = np.zeros((4, 4, 4), np.uint8)
    a[..., 1] = 200  # green
    a[:, :2, 3] = 255  # left half opaque, right half transparent
    rgba = load_image(str(_save(Image.fromarray(a, "RGBA"), tmp_path / "a.png")), (4, 4), 3)
    assert rgba[:, :, 0].T.tolist() == [[0, 200, 0]] * 4 and rgba[:, :, 3].T.tolist() == [[255, 255, 255]] * 4
    p = Image.fromarray(np.full((4, 4, 3), (10, 120, 230), np.uint8))
    p = p.convert("P", palette=Image.Palette.ADAPTIVE)
    pal = load_image(str(_save(p, tmp_path / "p.png")), (4, 4), 3)
    assert pal[:, 1, 1].tolist() == [10, 120, 230]
    gray = load_image(str(_save(Image.new("L", (4, 4), 77), tmp_path / "g.png")), (4, 4), 3)
    assert gray.shape == (3, 4, 4) and (gray == 77).all()


def test_resize_keeps_aspect_by_centre_cropping(tmp_path):
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, 10:20] = 255  # white centre third
    x = load_image(str(_save(Image.fromarray(a), tmp_path / "w.png")), (10, 10), 3)
    assert (x[:, 1:-1, 1:-1] > 250).all()  # the centre square, not a squashed whole


# ---------------------------------------------------------------- image folders

def tiny_png(path: Path, value: int, mode: str = "RGB") -> Path:
    colour = value if mode == "L" else (value, 255 - value, value // 2)
    return _save(Image.new(mode, (12, 10), colour), path)


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 10, mode: str = "RGB") -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            tiny_png(root / name / f"{i:03d}.png", 20 * c + i, mode)
    return root


def test_image_folder_with_awkward_files_skips_and_counts_the_unreadable(tmp_path):
    root = make_folder(tmp_path / "data")
    exif_rotated_jpeg(root / "cat" / "rotated.jpg")
    _save(Image.new("L", (9, 9), 50), root / "cat" / "gray.png")
    _save(Image.new("RGBA", (9, 9), (1, 2, 3, 128)), root / "dog" / "rgba.png")
    _save(Image.new("RGB", (9, 9), (9, 99, 199)).convert("P"), root / "dog" / "palette.gif")
    _save(Image.fromarray(np.full((9, 9), 40000, np.uint16)), root / "dog" / "deep.png")
    (root / "dog" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "cat" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    with pytest.warns(DataWarning, match=r"skipped 2 file\(s\)(.|\n)*notes.txt(.|\n)*corrupt.png"):
        b = load_data(f"imagefolder:{root}", image_size=16, val_fraction=0.0)
    assert b.skipped_files == 2 and "2 unreadable file(s) skipped" in b.describe()
    assert (b.name, b.num_classes, b.class_names, b.in_chans, b.image_size) == (
        "imagefolder", 2, ["cat", "dog"], 3, (16, 16))
    assert len(b.train) + len(b.test) == 25 and not b.in_memory
    items = [b.train[i] for i in range(len(b.train))] + [b.test[i] for i in range(len(b.test))]
    assert all(x.dtype == torch.uint8 and x.shape == (3, 16, 16) for x, _ in items)
    assert len(b.mean) == 3 and all(0 < s for s in b.std)


def test_gray_only_folder_has_one_channel(tmp_path):
    root = make_folder(tmp_path / "g", mode="L")
    _save(Image.fromarray(np.full((9, 9), 40000, np.uint16)), root / "dog" / "deep.png")
    b = load_data(f"imagefolder:{root}", image_size=(8, 6))
    assert b.in_chans == 1 and b.image_size == (8, 6) and b.train[0][0].shape == (1, 8, 6)


def test_empty_and_one_class_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_data(f"imagefolder:{tmp_path / 'empty'}")
    make_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="only one class"):
        load_data(f"imagefolder:{tmp_path / 'one'}")
    for c in ("a", "b"):
        (tmp_path / "txt" / c).mkdir(parents=True)
        (tmp_path / "txt" / c / "x.txt").write_text("hello")
    with pytest.raises(DataError, match="no readable images"), pytest.warns(DataWarning):
        load_data(f"imagefolder:{tmp_path / 'txt'}")
    with pytest.raises(DataError, match="not a folder"):
        load_data(f"imagefolder:{tmp_path / 'missing'}")


def test_class_folder_without_images_is_an_error(tmp_path):
    root = make_folder(tmp_path / "d")
    (root / "zebra").mkdir()
    with pytest.raises(DataError, match=r"\['zebra'\] hold no readable images"):
        load_data(f"imagefolder:{root}")


def _paths(split: ImageFolderDataset) -> list[str]:
    return [Path(p).name + Path(p).parent.name for p in split.paths]


def test_image_folder_seeded_splits_are_reproducible_and_test_is_fixed(tmp_path):
    root = make_folder(tmp_path / "d", per_class=20)
    a = load_data(f"imagefolder:{root}", image_size=8, seed=1)
    a2 = load_data(f"imagefolder:{root}", image_size=8, seed=1)
    b = load_data(f"imagefolder:{root}", image_size=8, seed=2)
    assert a.split_sizes() == {"train": 29, "val": 3, "test": 8}  # 10% of 32 is 3.2
    assert _paths(a.val) == _paths(a2.val) and _paths(a.train) == _paths(a2.train)
    assert _paths(a.test) == _paths(b.test) and _paths(a.val) != _paths(b.val)
    assert sorted(_paths(a.train) + _paths(a.val) + _paths(a.test)) == sorted(
        f"{i:03d}.png{c}" for c in ("cat", "dog") for i in range(20))


def test_train_val_test_sub_folders_are_used(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=10)
    make_folder(tmp_path / "d" / "val", per_class=3)
    b = load_data(f"imagefolder:{tmp_path / 'd'}", image_size=8)
    assert b.split_sizes() == {"train": 18, "val": 2, "test": 6}  # val/ is the test split; val carved
    assert all("/val/" in p for p in b.test.paths)
    make_folder(tmp_path / "d" / "test", per_class=4)
    b = load_data(f"imagefolder:{tmp_path / 'd'}", image_size=8)
    assert b.split_sizes() == {"train": 20, "val": 6, "test": 8}
    assert all("/val/" in p for p in b.val.paths) and all("/test/" in p for p in b.test.paths)
    make_folder(tmp_path / "d" / "test", classes=("cow",), per_class=1)
    with pytest.raises(DataError, match=r"\['cow'\] do not exist in the training split"):
        load_data(f"imagefolder:{tmp_path / 'd'}")


def test_image_folder_class_subset(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=5)
    b = load_data(f"imagefolder:{root}", image_size=8, classes=[2, 0], val_fraction=0.0)
    assert b.class_names == ["c", "a"] and b.num_classes == 2
    pairs = zip(b.train.paths, b.train.labels.tolist(), strict=True)
    assert all((Path(p).parent.name, y) in (("c", 0), ("a", 1)) for p, y in pairs)


def test_a_file_that_fails_to_decode_mid_epoch_is_replaced_not_fatal(tmp_path):
    good = tiny_png(tmp_path / "good.png", 100)
    whole = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(whole, "JPEG")
    broken = tmp_path / "truncated.jpg"
    broken.write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    probe(str(broken))  # passes the cheap check at indexing time ...
    ds = ImageFolderDataset([(str(broken), 0), (str(good), 1)], (8, 8), 3, ["a", "b"])
    with pytest.warns(DataWarning, match="truncated.jpg: cannot be decoded"):
        x, y = ds[0]  # ... and is replaced by the next image when it fails to decode
    assert y == 1 and torch.equal(x, ds[1][0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds[0]  # warned once per file


# ---------------------------------------------------------------- loaders

def test_loader_batches_are_uint8_and_order_depends_only_on_seed_and_epoch(tmp_path):
    root = make_folder(tmp_path / "d", per_class=12)
    b = load_data(f"imagefolder:{root}", image_size=8, val_fraction=0.0)
    loader = make_loader(b.train, 5, shuffle=True, seed=7, num_workers=2, drop_last=True)
    state = torch.get_rng_state()
    epoch0 = [(x, y) for x, y in loader]
    epoch1 = [y for _, y in loader]
    assert torch.equal(state, torch.get_rng_state())  # the augmentation's RNG is untouched
    x, y = epoch0[0]
    assert x.dtype == torch.uint8 and x.shape == (5, 3, 8, 8) and y.dtype == torch.int64
    assert len(epoch0) == len(b.train) // 5
    labels0 = [y for _, y in epoch0]
    assert not all(torch.equal(p, q) for p, q in zip(labels0, epoch1, strict=True))
    fresh = make_loader(b.train, 5, shuffle=True, seed=7, num_workers=0, drop_last=True)
    fresh.sampler.set_epoch(1, skip=5)  # resume epoch 1 after one batch
    assert all(torch.equal(p, q) for p, q in zip([y for _, y in fresh], epoch1[1:], strict=True))


def test_loader_over_an_array_split():
    b = load_data("digits")
    batches = list(make_loader(b.test, 100, shuffle=False, seed=0))
    assert torch.equal(torch.cat([x for x, _ in batches]), b.test.images)
