"""Data: MNIST loading and validation (``mnist``), labelled evaluation folders (``evalsets``),
rendered handwriting on paper (``render``) and photo-like augmentation (``augment``)."""

from edgedigits.data.mnist import Mnist, load_mnist

__all__ = ["Mnist", "load_mnist"]
