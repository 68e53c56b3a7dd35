"""Unit tests of ncflow.data: the Dataset type, file loading and the bundled digits."""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_load_digits

from ncflow._validation import InvalidArgument
from ncflow.data import Dataset, load_dataset, load_digits, save_npz
from ncflow.metrics import nc4_ncc_agreement

EPS = float(np.finfo(np.float64).eps)

# Three non-zero samples in the plane, used wherever only the labels matter.
X3 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
X4 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]])


# Dataset.from_arrays: invalid input


@pytest.mark.parametrize(
    ("X", "y", "kwargs", "fragment"),
    [
        pytest.param([[1, 0], [0, np.nan], [1, 1]], [0, 1, 1], {}, "X[1, 1]", id="nan"),
        pytest.param([[1, 0], [0, 1], [np.inf, 1]], [0, 1, 1], {}, "X[2, 0]", id="inf"),
        pytest.param([1.0, 2.0, 3.0], [0, 1, 1], {}, "(3,)", id="X-1d"),
        pytest.param(X3, [[0], [1], [1]], {}, "(3, 1)", id="y-2d"),
        pytest.param(X3, [0, 1], {}, "n=3", id="length-mismatch"),
        pytest.param(X3, ["a", "a", "a"], {}, "'a'", id="one-class"),
        pytest.param(
            X3, [0, 1, 1], {"class_order": (0, 1, 7)}, "'7'", id="empty-class"
        ),
        pytest.param([[1, 0], [0, 0], [1, 1]], [0, 1, 1], {}, "X[1]", id="zero-row"),
        pytest.param(X3, [0.0, 0.5, 1.0], {}, "0.5", id="fractional-label"),
        pytest.param(np.zeros((0, 2)), [], {}, "n=0", id="no-samples"),
        pytest.param(
            X3, [0, 1, 2], {"class_order": (0, 1)}, "'2'", id="order-misses-label"
        ),
        pytest.param(
            X3, [0, 1, 1], {"class_order": (1, 0, 1)}, "'1'", id="order-repeats"
        ),
        pytest.param(
            X3, np.array([0, "a", 1], dtype=object), {}, "y[1]='a'", id="mixed-kinds"
        ),
        pytest.param(np.ones((3, 0)), [0, 1, 1], {}, "D=0", id="no-features"),
    ],
)
def test_from_arrays_rejects_invalid_input(X, y, kwargs, fragment):
    with pytest.raises(InvalidArgument) as caught:
        Dataset.from_arrays(X, y, **kwargs)
    assert fragment in str(caught.value)


def test_from_arrays_length_mismatch_counts():
    with pytest.raises(InvalidArgument) as caught:
        Dataset.from_arrays(X3, [0, 1])
    assert "2 labels" in str(caught.value)


def test_from_arrays_rejects_nan_label():
    with pytest.raises(InvalidArgument) as caught:
        Dataset.from_arrays(X3, [0.0, np.nan, 1.0])
    assert "y[1]=nan" in str(caught.value)


# Dataset constructor: invalid input


def test_constructor_rejects_label_out_of_range():
    with pytest.raises(InvalidArgument) as caught:
        Dataset(X=X3, labels=np.array([0, 1, 5]), class_names=("a", "b"), name="t")
    assert "labels[2]=5" in str(caught.value)


def test_constructor_rejects_float_labels():
    with pytest.raises(InvalidArgument) as caught:
        Dataset(
            X=X3, labels=np.array([0.0, 1.0, 1.0]), class_names=("a", "b"), name="t"
        )
    assert "float64" in str(caught.value)


def test_constructor_rejects_empty_class():
    with pytest.raises(InvalidArgument) as caught:
        Dataset(X=X3, labels=np.array([0, 1, 1]), class_names=("a", "b", "c"), name="t")
    assert "class 2 ('c')" in str(caught.value)


def test_constructor_rejects_repeated_class_names():
    with pytest.raises(InvalidArgument) as caught:
        Dataset(X=X3, labels=np.array([0, 1, 1]), class_names=("a", "a"), name="t")
    assert "('a', 'a')" in str(caught.value)


# Label mapping


@pytest.mark.parametrize(
    ("class_order", "names", "labels"),
    [
        # By default +1 is class 0, the + class of a scalar head in ncflow.metrics.
        (None, ("1", "-1"), [0, 1, 1, 0]),
        ((-1, 1), ("-1", "1"), [1, 0, 0, 1]),
    ],
)
def test_signs_keep_int_minus_plus_one(class_order, names, labels):
    y = np.array([1, -1, -1, 1])
    dataset = Dataset.from_arrays(X4, y, class_order=class_order)
    assert dataset.class_names == names
    assert np.array_equal(dataset.labels, labels)
    assert np.array_equal(dataset.signs, y.astype(float))


def test_signs_keep_float_minus_plus_one():
    y = np.array([1.0, -1.0, -1.0, 1.0])
    dataset = Dataset.from_arrays(X4, y)
    assert dataset.class_names == ("1", "-1")
    assert np.array_equal(dataset.signs, y)


def test_minus_plus_one_labels_read_as_paper_classes():
    # A scalar head predicts each sample's sign, and the features lie on one axis
    # per sign. With class 0 as the + class the head agrees with the nearest
    # class mean on every sample. With class 0 named -1 it disagreed on every one.
    y = np.array([1, -1, -1, 1])
    dataset = Dataset.from_arrays(X4, y)
    features = np.where(y[:, None] > 0, [1.0, 0.0], [0.0, 1.0])
    head = np.array([[1.0, -1.0]])
    assert nc4_ncc_agreement(head, features, dataset.labels, 2) == 1.0


def test_signs_keep_signed_strings():
    y = np.array(["+1", "-1", "-1", "+1"])
    dataset = Dataset.from_arrays(X4, y)
    # "+" sorts before "-" in ASCII, so "+1" is class 0.
    assert dataset.class_names == ("+1", "-1")
    assert np.array_equal(dataset.signs, [1.0, -1.0, -1.0, 1.0])


def test_labels_zero_two_map_to_zero_one():
    dataset = Dataset.from_arrays(X4, [2, 0, 0, 2])
    assert dataset.class_names == ("0", "2")
    assert np.array_equal(dataset.labels, [1, 0, 0, 1])
    assert np.array_equal(dataset.signs, [-1.0, 1.0, 1.0, -1.0])


def test_labels_numbers_sort_numerically():
    dataset = Dataset.from_arrays(X3, [10, 2, 10])
    assert dataset.class_names == ("2", "10")
    assert np.array_equal(dataset.labels, [1, 0, 1])


def test_labels_integral_floats_name_as_integers():
    dataset = Dataset.from_arrays(X3, [3.0, 7.0, 3.0])
    assert dataset.class_names == ("3", "7")


def test_labels_strings_sort_as_strings():
    dataset = Dataset.from_arrays(X3, ["dog", "cat", "dog"])
    assert dataset.class_names == ("cat", "dog")
    assert np.array_equal(dataset.labels, [1, 0, 1])


def test_labels_bools_put_false_first():
    dataset = Dataset.from_arrays(X3, [True, False, True])
    assert dataset.class_names == ("False", "True")
    assert np.array_equal(dataset.labels, [1, 0, 1])
    assert np.array_equal(dataset.signs, [-1.0, 1.0, -1.0])


def test_labels_object_array_of_ints():
    dataset = Dataset.from_arrays(X3, np.array([5, 1, 5], dtype=object))
    assert dataset.class_names == ("1", "5")
    assert np.array_equal(dataset.labels, [1, 0, 1])


def test_class_order_sets_class_indices():
    dataset = Dataset.from_arrays(X3, ["dog", "cat", "dog"], class_order=("dog", "cat"))
    assert dataset.class_names == ("dog", "cat")
    assert np.array_equal(dataset.labels, [0, 1, 0])
    assert np.array_equal(dataset.signs, [1.0, -1.0, 1.0])


def test_class_order_accepts_numbers_for_numeric_labels():
    dataset = Dataset.from_arrays(X3, [0, 2, 2], class_order=(2, 0))
    assert dataset.class_names == ("2", "0")
    assert np.array_equal(dataset.labels, [1, 0, 0])


def test_signs_rejects_three_classes():
    dataset = Dataset.from_arrays(X3, [0, 1, 2])
    with pytest.raises(InvalidArgument) as caught:
        _ = dataset.signs
    assert "only defined for two classes" in str(caught.value)


# Properties, immutability and derived datasets


def test_properties_count_samples_and_classes():
    dataset = Dataset.from_arrays(X4, ["b", "a", "b", "b"], name="toy")
    assert dataset.n == 4
    assert dataset.D == 2
    assert dataset.K == 2
    assert dataset.name == "toy"
    assert np.array_equal(dataset.class_sizes, [1, 3])
    assert np.array_equal(dataset.class_indices[0], [1])
    assert np.array_equal(dataset.class_indices[1], [0, 2, 3])


def test_arrays_are_read_only_copies():
    X = X4.copy()
    y = np.array([0, 1, 0, 1])
    dataset = Dataset.from_arrays(X, y)
    X[0, 0] = 99.0
    assert dataset.X[0, 0] == 1.0
    assert not dataset.X.flags.writeable
    assert not dataset.labels.flags.writeable
    assert dataset.X.dtype == np.float64
    assert dataset.labels.dtype == np.int64
    with pytest.raises(ValueError):
        dataset.X[0, 0] = 5.0


def test_fields_cannot_be_reassigned():
    dataset = Dataset.from_arrays(X3, [0, 1, 1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.name = "other"  # type: ignore[misc]


def test_subset_keeps_named_classes_in_given_order():
    dataset = Dataset.from_arrays(X4, ["a", "b", "c", "b"], name="toy")
    part = dataset.subset(["c", "b"])
    assert part.class_names == ("c", "b")
    assert np.array_equal(part.X, X4[[1, 2, 3]])
    assert np.array_equal(part.labels, [1, 0, 1])
    assert part.name == "toy[c,b]"


def test_subset_rejects_unknown_class():
    dataset = Dataset.from_arrays(X3, [0, 1, 2])
    with pytest.raises(InvalidArgument) as caught:
        dataset.subset([0, 9])
    assert "'9'" in str(caught.value)


def test_subset_rejects_single_class():
    dataset = Dataset.from_arrays(X3, [0, 1, 2])
    with pytest.raises(InvalidArgument) as caught:
        dataset.subset([1])
    assert "at least two" in str(caught.value)


def test_with_bias_appends_ones_column():
    dataset = Dataset.from_arrays(X4, [0, 1, 0, 1])
    biased = dataset.with_bias()
    assert biased.D == 3
    assert np.array_equal(biased.X[:, :2], X4)
    assert np.array_equal(biased.X[:, 2], np.ones(4))
    assert np.array_equal(biased.labels, dataset.labels)


def test_normalized_rows_have_unit_norm():
    dataset = Dataset.from_arrays(X4 * 3.0, [0, 1, 0, 1])
    unit = dataset.normalized()
    # Each norm is a D-term sum of squares (D eps relative), the division rounds once
    # and the check recomputes the norm (D eps again): 2 (D + 1) eps with D = 2.
    tol = 2 * (unit.D + 1) * EPS
    assert np.max(np.abs(np.linalg.norm(unit.X, axis=1) - 1.0)) <= tol


# load_dataset and save_npz


def test_npz_round_trip_keeps_everything(tmp_path: Path):
    dataset = Dataset.from_arrays(X4, [10, 2, 2, 10])
    path = save_npz(dataset, tmp_path / "toy.npz")
    loaded = load_dataset(path)
    assert np.array_equal(loaded.X, dataset.X)
    assert np.array_equal(loaded.labels, dataset.labels)
    assert loaded.class_names == ("2", "10")
    assert loaded.name == "toy"


def test_npz_round_trip_keeps_custom_class_order(tmp_path: Path):
    dataset = Dataset.from_arrays(X4, ["a", "b", "b", "a"], class_order=("b", "a"))
    loaded = load_dataset(save_npz(dataset, tmp_path / "order.npz"))
    assert loaded.class_names == ("b", "a")
    assert np.array_equal(loaded.labels, dataset.labels)


def test_npz_round_trip_keeps_signs(tmp_path: Path):
    dataset = Dataset.from_arrays(X4, [1, -1, -1, 1])
    loaded = load_dataset(save_npz(dataset, tmp_path / "signs.npz"))
    assert np.array_equal(loaded.signs, dataset.signs)


def test_npz_reads_plain_x_and_y(tmp_path: Path):
    path = tmp_path / "plain.npz"
    np.savez(path, X=X4, y=np.array([3, 1, 1, 3]))
    loaded = load_dataset(path)
    assert loaded.class_names == ("1", "3")
    assert np.array_equal(loaded.labels, [1, 0, 0, 1])


def test_npz_missing_array_names_keys_present(tmp_path: Path):
    path = tmp_path / "bad.npz"
    np.savez(path, X=X4, labels=np.array([0, 1, 0, 1]))
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert "['X', 'labels']" in str(caught.value)
    assert "'y'" in str(caught.value)


def test_npy_named_npz_is_not_an_archive(tmp_path: Path):
    path = tmp_path / "array.npz"
    with path.open("wb") as handle:
        np.save(handle, X4)
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)
    assert "a single .npy array, not an .npz archive" in str(caught.value)
    assert "numpy.savez" in str(caught.value)


@pytest.mark.parametrize("content", [b"", b"X,y\n1,0\n", b"PK\x03\x04 damaged"])
def test_npz_unreadable_names_path(tmp_path: Path, content: bytes):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)
    assert "cannot be read as an .npz archive" in str(caught.value)


def test_npz_reasons_for_empty_and_object_files(tmp_path: Path):
    # numpy reports "No data left in file" for an empty file and requires
    # allow_pickle for an object array. Each gets its own reason.
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with pytest.raises(InvalidArgument, match="an empty file, not an .npz archive"):
        load_dataset(empty)
    pickled = tmp_path / "object.npz"
    np.savez(pickled, X=np.array([object(), 1], dtype=object), y=np.zeros(2))
    with pytest.raises(InvalidArgument, match=r"an object \(pickled\) array"):
        load_dataset(pickled)


def test_load_rejects_unknown_suffix(tmp_path: Path):
    path = tmp_path / "data.xyz"
    path.write_text("1,2,0\n")
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert "unknown file type '.xyz'; use .npz or .csv" in str(caught.value)


def test_load_missing_file_names_path(tmp_path: Path):
    path = tmp_path / "absent.npz"
    with pytest.raises(FileNotFoundError) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)


def test_save_npz_rejects_other_suffix(tmp_path: Path):
    dataset = Dataset.from_arrays(X3, [0, 1, 1])
    with pytest.raises(InvalidArgument) as caught:
        save_npz(dataset, tmp_path / "toy.csv")
    assert "'.csv'" in str(caught.value)


def test_csv_round_trip_with_header(tmp_path: Path):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    path = tmp_path / "gauss.csv"
    # 17 significant digits make every float64 round-trip exactly.
    np.savetxt(
        path,
        np.column_stack([X, y]),
        delimiter=",",
        fmt="%.17g",
        header="a,b,c,label",
        comments="",
    )
    loaded = load_dataset(path)
    assert np.array_equal(loaded.X, X)
    assert np.array_equal(loaded.labels, y)
    assert loaded.class_names == ("0", "1")
    assert loaded.name == "gauss"


def test_csv_without_header_uses_last_column(tmp_path: Path):
    path = tmp_path / "plain.csv"
    path.write_text("1.5,0,-1\n0,2,1\n\n3,1,-1\n")
    loaded = load_dataset(path)
    assert np.array_equal(loaded.X, [[1.5, 0.0], [0.0, 2.0], [3.0, 1.0]])
    assert np.array_equal(loaded.signs, [-1.0, 1.0, -1.0])


def test_csv_header_label_column_may_be_first(tmp_path: Path):
    path = tmp_path / "first.csv"
    path.write_text("Y,f1,f2\ncat,1,0\ndog,0,1\ncat,2,0\n")
    loaded = load_dataset(path)
    assert loaded.class_names == ("cat", "dog")
    assert np.array_equal(loaded.labels, [0, 1, 0])
    assert np.array_equal(loaded.X, [[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])


def test_csv_string_labels_without_header(tmp_path: Path):
    path = tmp_path / "names.csv"
    path.write_text("1,0,cat\n0,1,dog\n")
    loaded = load_dataset(path)
    assert loaded.class_names == ("cat", "dog")
    assert loaded.n == 2


@pytest.mark.parametrize(
    ("text", "line", "value"),
    [
        ("a,b,y\n1,2,0\n1,oops,1\n", "line 3", "'oops'"),
        # A first line with a number and a text feature is a sample with a bad
        # value, not a header. Read as a header, its error was about the classes.
        ("1,abc,0\n2,3,1\n", "line 1", "'abc'"),
    ],
)
def test_csv_rejects_non_numeric_feature(tmp_path: Path, text, line, value):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert line in str(caught.value)
    assert value in str(caught.value)


def test_csv_rejects_ragged_line(tmp_path: Path):
    path = tmp_path / "ragged.csv"
    path.write_text("1,2,0\n1,1\n")
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert "line 2" in str(caught.value)


def test_csv_rejects_empty_file(tmp_path: Path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert "n=0" in str(caught.value)


def test_csv_rejects_non_utf8_bytes(tmp_path: Path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"\xff\xfe1,0,a\n")
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert str(path) in str(caught.value)
    assert "not UTF-8 text" in str(caught.value)
    assert "at byte 0" in str(caught.value)


def test_csv_nan_feature_names_entry(tmp_path: Path):
    path = tmp_path / "nan.csv"
    path.write_text("1,2,0\n1,nan,1\n")
    with pytest.raises(InvalidArgument) as caught:
        load_dataset(path)
    assert "X[1, 1]" in str(caught.value)


# Bundled digits


def _sklearn_digits():
    bunch = sklearn_load_digits()
    return np.asarray(bunch.data, dtype=np.float64), np.asarray(bunch.target)


def test_sklearn_bundles_1797_digits():
    images, targets = _sklearn_digits()
    assert images.shape == (1797, 64)
    assert targets.shape == (1797,)


def test_digits_default_classes_match_sklearn_counts():
    _, targets = _sklearn_digits()
    dataset = load_digits()
    expected_sizes = [int(np.sum(targets == digit)) for digit in (0, 1, 2)]
    assert dataset.n == 537
    assert dataset.n == sum(expected_sizes)
    assert dataset.D == 64
    assert dataset.class_names == ("0", "1", "2")
    assert np.array_equal(dataset.class_sizes, expected_sizes)
    assert dataset.name == "digits[0,1,2]-centered"


def test_digits_uncentered_are_pixels_over_16():
    images, targets = _sklearn_digits()
    dataset = load_digits(center=False)
    keep = np.isin(targets, (0, 1, 2))
    # Division by 16, a power of two, is exact in float64.
    assert np.array_equal(dataset.X, images[keep] / 16.0)
    assert dataset.X.min() >= 0.0
    assert dataset.X.max() <= 1.0
    assert dataset.name == "digits[0,1,2]"


def test_digits_centered_mean_is_zero():
    dataset = load_digits()
    n = dataset.n
    # Pixels lie in [0, 1], so each mean of n terms has a summation error of at most
    # n eps; subtracting rounds each entry once (eps / 2 on a value <= 1), and the
    # mean taken here adds at most n eps again: (2 n + 1) eps in all.
    tol = (2 * n + 1) * EPS
    assert np.max(np.abs(dataset.X.mean(axis=0))) <= tol


def test_digits_class_order_follows_argument():
    _, targets = _sklearn_digits()
    dataset = load_digits((2, 0))
    assert dataset.class_names == ("2", "0")
    assert np.array_equal(
        dataset.class_sizes, [np.sum(targets == 2), np.sum(targets == 0)]
    )


@pytest.mark.parametrize(
    "classes", [*itertools.combinations(range(10), 2), tuple(range(10))], ids=str
)
def test_digits_centering_leaves_no_zero_image(classes):
    dataset = load_digits(classes)
    # Centring errs by at most 2 n eps per pixel (see the mean-zero test), so an image
    # that centring made zero would have norm at most sqrt(64) 2 n eps.
    roundoff_norm = np.sqrt(dataset.D) * 2 * dataset.n * EPS
    assert np.linalg.norm(dataset.X, axis=1).min() > 1e6 * roundoff_norm


@pytest.mark.parametrize(
    ("classes", "fragment"),
    [
        pytest.param((0, 10), "10", id="out-of-range"),
        pytest.param((1, 1), "repeats", id="repeat"),
        pytest.param((3,), "at least two", id="single"),
        pytest.param(5, "5", id="not-a-sequence"),
        pytest.param((0, True), "True", id="bool"),
    ],
)
def test_digits_rejects_invalid_classes(classes, fragment):
    with pytest.raises(InvalidArgument) as caught:
        load_digits(classes)
    assert fragment in str(caught.value)


def test_csv_byte_order_mark_keeps_first_sample(tmp_path: Path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf1,0,0\n0,1,1\n")
    loaded = load_dataset(path)
    assert loaded.n == 2
    assert np.array_equal(loaded.X, [[1.0, 0.0], [0.0, 1.0]])


@pytest.mark.parametrize(
    "row, fragment",
    [
        ([0.0, 0.0], "X[1] is invalid: the sample is a zero vector"),
        ([1e-300, 0.0], "X[1] is invalid: it has entries up to 1e-300, whose squared"),
        (
            [1e300, 1e300],
            "X[1] is invalid: its squared norm overflows float64; rescale X",
        ),
    ],
)
def test_degenerate_rows_are_named(row, fragment):
    # A row whose squared norm underflows is not called a zero vector, and
    # none of the three cases warns before the error.
    X = np.array([[1.0, 0.0], row, [-1.0, 0.0], [0.0, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidArgument) as error:
            Dataset.from_arrays(X, np.array([0, 0, 1, 1]))
    assert fragment in str(error.value)
