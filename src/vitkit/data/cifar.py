"""CIFAR-10 and CIFAR-100 from the official "python version" folders, read without running code.

The files are pickles. A pickle can name any importable callable and have it called while loading,
so they are read with `SafeUnpickler`, which admits only what an ndarray inside a dict needs.
"""

from __future__ import annotations

import codecs
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vitkit.data.bundle import ArraySplit, DataError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

# (module, name) -> the object itself; nothing is imported by name while unpickling.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # what the official files (numpy 1) name
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # what numpy 2 writes
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Protocol-2 pickles written by Python 3 (a re-saved copy) spell bytes as encode(text, 'latin1').
    ("_codecs", "encode"): codecs.encode,
}
for _module in ("builtins", "__builtin__"):  # __builtin__: the Python 2 name
    for _cls in (dict, list, tuple, set, frozenset, bytearray):
        _ALLOWED[(_module, _cls.__name__)] = _cls


class SafeUnpickler(pickle.Unpickler):
    """Refuses every global except numpy array reconstruction and plain containers."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load '{module}.{name}': a CIFAR file holds only numpy arrays, lists and "
                "dicts, so this file is not one (or has been tampered with); nothing in it was run") from None


def safe_load(path: Path) -> Any:
    """Unpickle a CIFAR batch file; Python 2 strings stay bytes (encoding='bytes')."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"{path}: {e}") from e
    except (EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataError(f"{path}: not a readable CIFAR pickle (truncated or corrupt?): {e}") from e


@dataclass(frozen=True)
class CifarLayout:
    folder: str  # the folder name inside the archive
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    url: str


LAYOUTS = {
    "cifar10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", "labels", "label_names",
                           "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": CifarLayout("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names",
                            "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def find_folder(path: Path, layout: CifarLayout) -> Path:
    """PATH may be the folder itself or the folder that holds it."""
    for candidate in (path, path / layout.folder):
        if (candidate / layout.meta_file).is_file():
            return candidate
    raise DataError(
        f"{path}: no {layout.folder}/ folder here (looked for {layout.meta_file} in {path} and in "
        f"{path / layout.folder}); download {layout.url}, extract it, and pass the extracted folder "
        "or its parent")


def _str_keys(obj: Any, path: Path) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_batch(path: Path, label_key: str) -> ArraySplit:
    """One batch file -> uint8 (N, 3, 32, 32) and int64 labels."""
    if not path.is_file():
        raise DataError(f"{path}: missing; a complete CIFAR folder has this file")
    d = _str_keys(safe_load(path), path)
    if "data" not in d or label_key not in d:
        raise DataError(f"{path}: expected keys 'data' and '{label_key}', found {sorted(d)}")
    data, labels = d["data"], np.asarray(d[label_key], dtype=np.int64)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' should be uint8 (N, 3072), found "
                        f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())  # rows are R plane, G plane, B plane
    return ArraySplit(images, torch.from_numpy(labels))


def read_class_names(path: Path, names_key: str) -> list[str]:
    d = _str_keys(safe_load(path), path)
    if names_key not in d:
        raise DataError(f"{path}: expected key '{names_key}', found {sorted(d)}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in d[names_key]]


def load_cifar_splits(kind: str, path: Path) -> tuple[ArraySplit, ArraySplit, list[str], Path]:
    """(train, test, class names, resolved folder) for kind 'cifar10' or 'cifar100'."""
    layout = LAYOUTS[kind]
    folder = find_folder(path, layout)
    names = read_class_names(folder / layout.meta_file, layout.names_key)
    parts = [read_batch(folder / f, layout.label_key) for f in layout.train_files]
    train = ArraySplit(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))
    test = read_batch(folder / layout.test_file, layout.label_key)
    for split, name in ((train, "train"), (test, "test")):
        if split.labels.numel() and not 0 <= int(split.labels.min()) <= int(split.labels.max()) < len(names):
            raise DataError(f"{folder}: {name} labels outside 0..{len(names) - 1} (the classes in "
                            f"{layout.meta_file})")
    return train, test, names, folder
