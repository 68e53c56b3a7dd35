"""Datasets: the :class:`Dataset` type, file loading and the bundled digits."""

from ncflow.data.dataset import Dataset
from ncflow.data.digits import load_digits
from ncflow.data.io import load_dataset, save_npz

__all__ = ["Dataset", "load_dataset", "load_digits", "save_npz"]
