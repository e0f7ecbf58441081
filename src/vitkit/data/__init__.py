"""Data sets: scikit-learn digits, CIFAR-10/100, image folders; in-memory tensors or streamed.

`load_data(spec)` returns a `DataBundle`; small sets are `ArraySplit`s (one uint8 tensor, augmented
on the device by `vitkit.augment.BatchAugment`), image folders are Datasets for `make_loader`.
"""

from vitkit.data.bundle import ArraySplit, DataBundle, DataError, DataWarning
from vitkit.data.imagefolder import ImageFolderDataset
from vitkit.data.load import load_data, parse_spec
from vitkit.data.loader import EpochSampler, make_loader

__all__ = ["ArraySplit", "DataBundle", "DataError", "DataWarning", "EpochSampler", "ImageFolderDataset",
           "load_data", "make_loader", "parse_spec"]
