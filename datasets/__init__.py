"""Data sets of two-photon recordings with ground-truth masks of active neurons.

The records (:class:`Masks`, :class:`Recording`, :class:`Dataset`), lazily
opened movies, mask file readers and the data set registry. This package
knows nothing of ``bench``.
"""

from datasets.errors import InputError
from datasets.masks import Masks
from datasets.movies import ArrayMovie, HDF5Movie, Movie, NpyMovie, TiffMovie, ZipTiffMovie
from datasets.records import Dataset, Fold, Recording
from datasets.registry import Availability, DatasetProvider, data_root, get, providers

__all__ = [
    "InputError",
    "Masks",
    "Movie",
    "ArrayMovie",
    "HDF5Movie",
    "NpyMovie",
    "TiffMovie",
    "ZipTiffMovie",
    "Recording",
    "Dataset",
    "Fold",
    "Availability",
    "DatasetProvider",
    "data_root",
    "get",
    "providers",
]
