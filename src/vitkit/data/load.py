"""`load_data(spec)`: parse the --data spec, load the source, pick classes, carve the validation split."""

from __future__ import annotations

from pathlib import Path

import torch

from vitkit.config import as_pair
from vitkit.data import cifar, digits
from vitkit.data.bundle import DataBundle, DataError, channel_stats, check_classes, relabel_table
from vitkit.data.imagefolder import ImageFolderDataset, estimate_stats, index_folder
from vitkit.data.splits import TEST_FRACTION, TEST_SEED, stratified_split

DEFAULT_FOLDER_SIZE = 224
SPEC_HELP = "digits, cifar10:PATH, cifar100:PATH or imagefolder:PATH"


def parse_spec(spec: str) -> tuple[str, Path | None]:
    """'cifar10:/data' -> ('cifar10', Path('/data')); 'digits' -> ('digits', None)."""
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "digits":
        if rest:
            raise DataError(f"--data digits takes no path (it is bundled with scikit-learn), got {spec!r}")
        return kind, None
    if kind in ("cifar10", "cifar100", "imagefolder"):
        if not rest:
            raise DataError(f"--data {kind} needs a folder: {kind}:PATH")
        return kind, Path(rest).expanduser()
    raise DataError(f"unknown data spec {spec!r}; expected {SPEC_HELP}")


def select_classes(split, table: torch.Tensor):
    """Keep the items of the chosen classes, relabelled by their position in `classes`."""
    new = table[split.labels]
    keep = torch.nonzero(new >= 0).squeeze(1)
    out = split.subset(keep)
    out.labels = new[keep]
    return out


def load_data(spec: str, *, val_fraction: float = 0.1, seed: int = 0,
              image_size: int | tuple[int, int] | None = None,
              classes: list[int] | None = None) -> DataBundle:
    """Load a data set by spec (digits, cifar10:PATH, cifar100:PATH, imagefolder:PATH).

    Args:
        val_fraction: share of the training split held out (stratified, chosen by `seed`) for
            validation during training; 0 -> val is None. The test split never depends on `seed`.
        image_size: the resize target of image folders (default 224); in-memory sets keep their
            native size (the augmentation resizes on the device).
        classes: a subset of class ids, relabelled 0..k-1 in the given order (e.g. [5, 6, 7, 8, 9]).
            Normalisation statistics stay those of the full training split, so models trained on
            different subsets of one data set see the same input scaling.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    kind, path = parse_spec(spec)
    if kind == "imagefolder":
        size = as_pair(image_size if image_size is not None else DEFAULT_FOLDER_SIZE)
        return _imagefolder_bundle(path, size, val_fraction, seed, classes)  # type: ignore[arg-type]
    if kind == "digits":
        train, test = digits.load_digits_splits()
        names, source = list(digits.CLASS_NAMES), "digits (scikit-learn)"
    else:
        train, test, names, folder = cifar.load_cifar_splits(kind, path)  # type: ignore[arg-type]
        source = f"{kind}:{folder}"
    mean, std = channel_stats(train.images)
    return _finish(DataBundle(
        name=kind, num_classes=len(names), class_names=names, in_chans=train.images.shape[1],
        image_size=(train.images.shape[2], train.images.shape[3]), mean=mean, std=std,
        train=train, val=None, test=test, in_memory=True, source=source), val_fraction, seed, classes)


def _imagefolder_bundle(root: Path, size: tuple[int, int], val_fraction: float, seed: int,
                        classes: list[int] | None) -> DataBundle:
    index = index_folder(root)
    channels = 1 if index.gray else 3
    names = index.class_names
    train = ImageFolderDataset(index.train, size, channels, names)
    val = None if index.val is None else ImageFolderDataset(index.val, size, channels, names)
    if index.test is not None:
        test = ImageFolderDataset(index.test, size, channels, names)
    else:  # no val/ or test/: a fixed seeded 20%, the same for every run seed
        keep, held = stratified_split(train.labels, TEST_FRACTION, TEST_SEED)
        train, test = train.subset(keep), train.subset(held)
    mean, std = estimate_stats(train)
    bundle = DataBundle(
        name="imagefolder", num_classes=len(names), class_names=names, in_chans=channels, image_size=size,
        mean=mean, std=std, train=train, val=val, test=test, in_memory=False,
        skipped_files=len(index.skipped), source=f"imagefolder:{root}")
    return _finish(bundle, val_fraction, seed, classes)


def _finish(bundle: DataBundle, val_fraction: float, seed: int, classes: list[int] | None) -> DataBundle:
    """Apply the class subset, then carve (or drop) the validation split."""
    if classes is not None:
        chosen = check_classes(classes, bundle.num_classes)
        table = relabel_table(chosen, bundle.num_classes)
        bundle.train = select_classes(bundle.train, table)
        bundle.test = select_classes(bundle.test, table)
        if bundle.val is not None:
            bundle.val = select_classes(bundle.val, table)
        bundle.class_names = [bundle.class_names[c] for c in chosen]
        bundle.num_classes = len(chosen)
    if val_fraction == 0.0:
        bundle.val = None
    elif bundle.val is None:
        keep, held = stratified_split(bundle.train.labels, val_fraction, seed)
        bundle.train, bundle.val = bundle.train.subset(keep), bundle.train.subset(held)
    for name in ("train", "test"):
        if len(getattr(bundle, name)) == 0:
            detail = f" for classes {classes}" if classes else ""
            raise DataError(f"{bundle.source}: the {name} split is empty{detail}")
    return bundle

