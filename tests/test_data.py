"""IDX reader and dataset lookup, on tiny files the tests write."""


import numpy as np
import pytest
from idx_files import idx_bytes, write_split

from jaxrec import data
from jaxrec.core.errors import FormatError, InvalidArgumentError


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), np.array([7, 0, 9], np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_load_from_explicit_directory(tmp_path, tiny, compress):
    images, labels = tiny
    write_split(tmp_path, "t10k", images, labels, compress)
    got_images, got_labels = data.load_mnist("test", directory=tmp_path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.dtype == np.uint8


def test_env_var_root_and_explicit_argument_precedence(tmp_path, tiny, monkeypatch):
    images, labels = tiny
    write_split(tmp_path / "root" / "fashion-mnist", "train", images, labels, True)
    write_split(tmp_path / "other", "train", images[::-1], labels[::-1], False)
    monkeypatch.setenv("JAXREC_DATA", str(tmp_path / "root"))
    got, _ = data.load_mnist("train", dataset="fashion-mnist")
    np.testing.assert_array_equal(got, images)
    got, got_labels = data.load_mnist("train", dataset="fashion-mnist", directory=tmp_path / "other")
    np.testing.assert_array_equal(got, images[::-1])
    np.testing.assert_array_equal(got_labels, labels[::-1])


def test_default_root_is_shared_data_next_to_repo(monkeypatch):
    monkeypatch.delenv("JAXREC_DATA", raising=False)
    root = data.data_root()
    assert root.name == "data" and root.parent.name == "shared"
    assert data.dataset_dirs("mnist")[0] == root / "mnist"


def test_missing_file_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXREC_DATA", str(tmp_path / "nowhere"))
    dirs = data.dataset_dirs("fashion-mnist")
    assert len(dirs) == 2  # the data root and the Debian package folder
    with pytest.raises(FileNotFoundError) as info:
        data.find_file("t10k-images-idx3-ubyte", [tmp_path / "a", tmp_path / "b"])
    message = str(info.value)
    for folder in ("a", "b"):
        for suffix in (".gz", ""):
            assert str(tmp_path / folder / f"t10k-images-idx3-ubyte{suffix}") in message
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.load_mnist("test", directory=tmp_path / "nowhere")


def test_read_idx_other_types_and_bad_files(tmp_path):
    arr = np.arange(-6, 6, dtype=np.int16).reshape(3, 4)
    (tmp_path / "x").write_bytes(idx_bytes(arr, 0x0B))
    np.testing.assert_array_equal(data.read_idx(tmp_path / "x"), arr)
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((2, 2), np.uint8))[:-1])
    with pytest.raises(FormatError, match="needs 4 data bytes"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(FormatError, match="not an IDX file"):
        data.read_idx(tmp_path / "magic")


def test_bad_arguments():
    with pytest.raises(InvalidArgumentError, match="'valid'"):
        data.load_mnist("valid")
    with pytest.raises(InvalidArgumentError, match="'cifar'"):
        data.dataset_dirs("cifar")


# CIFAR-10 extracts (npz)


def test_load_cifar10_from_env_root_and_directory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.array([3, 8, 8, 0], np.uint8)
    (tmp_path / "cifar10").mkdir()
    np.savez_compressed(tmp_path / "cifar10" / "test_first1000.npz", images=images, labels=labels)
    np.savez_compressed(tmp_path / "train_batch_3.npz", images=images[::-1], labels=labels[::-1])
    monkeypatch.setenv("JAXREC_DATA", str(tmp_path))
    got_images, got_labels = data.load_cifar10("test")
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    got_images, _ = data.load_cifar10("train", directory=tmp_path)
    np.testing.assert_array_equal(got_images, images[::-1])
    with pytest.raises(FileNotFoundError, match="train_batch_3.npz"):
        data.load_cifar10("train")  # $JAXREC_DATA/cifar10 holds only the test file


def test_load_cifar10_rejects_bad_split_and_malformed_files(tmp_path):
    with pytest.raises(InvalidArgumentError, match="split"):
        data.load_cifar10("validation", directory=tmp_path)
    (tmp_path / "test_first1000.npz").write_bytes(b"PK\x03\x04 not a zip archive")
    with pytest.raises(FormatError, match="npz"):
        data.load_cifar10("test", directory=tmp_path)
    np.savez(tmp_path / "test_first1000.npz", images=np.zeros((2, 32, 32), np.uint8), labels=np.zeros(2, np.uint8))
    with pytest.raises(FormatError, match=r"\(N, 32, 32, 3\)"):
        data.load_cifar10("test", directory=tmp_path)
    np.savez(tmp_path / "test_first1000.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(FormatError, match="labels"):
        data.load_cifar10("test", directory=tmp_path)


def test_load_cifar10_shared_extracts():
    try:
        images, labels = data.load_cifar10("test")
    except FileNotFoundError:
        pytest.skip("the shared CIFAR-10 extracts are not available")
    assert images.shape == (1000, 32, 32, 3) and images.dtype == np.uint8
    assert labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the known first test labels
