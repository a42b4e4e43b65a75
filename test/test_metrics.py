"""Segmentation metrics against a plain brute-force count; plots and JSON reports written and read back."""
import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from ov3d_ros.evaluation.metrics import (
    Confusion,
    ConfusionAccumulator,
    confusion_matrix,
    segmentation_scores,
)
from ov3d_ros.evaluation.plots import plot_confusion, plot_per_class_iou
from ov3d_ros.evaluation.reports import segmentation_report, write_json

IGNORE = 255


def brute_force(pred, gt, num_classes, groups):
    """Scores by explicit loops over points and classes; None for a class without ground truth."""
    matrix = [[0] * num_classes for _ in range(num_classes)]
    unassigned = [0] * num_classes
    tp, fp, fn = [0] * num_classes, [0] * num_classes, [0] * num_classes
    scored = 0
    for p, g in zip(pred.tolist(), gt.tolist()):
        if g == IGNORE:
            continue
        scored += 1
        if 0 <= p < num_classes:
            matrix[g][p] += 1
        else:
            unassigned[g] += 1
        if p == g:
            tp[g] += 1
        else:
            fn[g] += 1
            if 0 <= p < num_classes:
                fp[p] += 1
    iou, acc = [], []
    for c in range(num_classes):
        if tp[c] + fn[c] == 0:
            iou.append(None)
            acc.append(None)
        else:
            iou.append(100.0 * tp[c] / (tp[c] + fp[c] + fn[c]))
            acc.append(100.0 * tp[c] / (tp[c] + fn[c]))

    def mean(values, classes):
        kept = [values[c] for c in classes if values[c] is not None]
        return sum(kept) / len(kept) if kept else None

    everything = range(num_classes)
    group_means = {}
    for name, members in groups.items():
        indices = [int(member.split("_")[1]) for member in members]
        group_means[name] = (mean(iou, indices), mean(acc, indices))
    return {
        "matrix": matrix,
        "unassigned": unassigned,
        "iou": iou,
        "accuracy": acc,
        "miou": mean(iou, everything),
        "macc": mean(acc, everything),
        "overall_accuracy": 100.0 * sum(tp) / scored if scored else None,
        "groups": group_means,
    }


def names(num_classes):
    return [f"class_{c}" for c in range(num_classes)]


def random_labels(seed):
    """Labels with ignored points, -1 and out-of-range predictions, one class absent, one class never predicted."""
    rng = np.random.default_rng(seed)
    num_classes = int(rng.integers(4, 13))
    n = 1500
    gt = rng.integers(0, num_classes, n)
    gt[rng.random(n) < 0.1] = IGNORE
    absent, unpredicted = rng.choice(num_classes, 2, replace=False)
    gt[gt == absent] = IGNORE
    pred = np.where(rng.random(n) < 0.5, gt, rng.integers(0, num_classes, n))
    pred[pred == IGNORE] = rng.integers(0, num_classes, int((pred == IGNORE).sum()))
    pred[rng.random(n) < 0.05] = -1
    pred[rng.random(n) < 0.02] = num_classes + 3
    pred[pred == unpredicted] = -1
    pred[: n // 50] = absent  # the absent class is predicted (false positives) but must not be scored
    classes = names(num_classes)
    groups = {"head": classes[:2], "common": classes[2:-2], "tail": classes[-2:]}
    return pred, gt, num_classes, groups, int(absent), int(unpredicted)


def assert_scores_equal(values, expected):
    for value, want in zip(np.asarray(values).tolist(), expected):
        if want is None:
            assert math.isnan(value)
        else:
            assert value == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_brute_force(seed):
    pred, gt, num_classes, groups, absent, unpredicted = random_labels(seed)
    want = brute_force(pred, gt, num_classes, groups)
    confusion = confusion_matrix(pred, gt, num_classes, IGNORE)
    assert confusion.matrix.shape == (num_classes, num_classes) and confusion.matrix.dtype == np.int64
    assert confusion.matrix.tolist() == want["matrix"]
    assert confusion.unassigned.tolist() == want["unassigned"]

    scores = segmentation_scores(confusion, names(num_classes), groups)
    assert_scores_equal(scores.iou, want["iou"])
    assert_scores_equal(scores.accuracy, want["accuracy"])
    assert scores.miou == pytest.approx(want["miou"])
    assert scores.macc == pytest.approx(want["macc"])
    assert scores.overall_accuracy == pytest.approx(want["overall_accuracy"])
    for group, (miou, macc) in want["groups"].items():
        assert_scores_equal([scores.group_miou[group], scores.group_macc[group]], [miou, macc])
    assert math.isnan(scores.iou[absent]) and not scores.present[absent]
    assert scores.iou[unpredicted] == 0.0 and scores.accuracy[unpredicted] == 0.0


def test_ignored_points_never_count():
    pred, gt, num_classes, _, _, _ = random_labels(7)
    ignored = gt == IGNORE
    other = pred.copy()
    other[ignored] = np.random.default_rng(0).integers(-1, num_classes, int(ignored.sum()))
    a, b = confusion_matrix(pred, gt, num_classes), confusion_matrix(other, gt, num_classes)
    assert np.array_equal(a.matrix, b.matrix) and np.array_equal(a.unassigned, b.unassigned)
    assert a.matrix.sum() + a.unassigned.sum() == (~ignored).sum()


def test_hand_computed_example():
    # class 0: 3 gt, 2 right, 1 unassigned; class 1: 2 gt, never predicted (1 -> 0, 1 -> -1); class 2: no gt.
    gt = np.array([0, 0, 0, 1, 1, 255, 255])
    pred = np.array([0, 0, -1, 0, -1, 2, 1])
    scores = segmentation_scores(confusion_matrix(pred, gt, 3), ["a", "b", "c"], {"head": ["a"], "tail": ["b", "c"]})
    assert scores.iou[0] == pytest.approx(100 * 2 / 4)
    assert scores.accuracy[0] == pytest.approx(100 * 2 / 3)
    assert scores.iou[1] == 0.0 and math.isnan(scores.iou[2]) and math.isnan(scores.accuracy[2])
    assert scores.miou == pytest.approx(25.0)
    assert scores.overall_accuracy == pytest.approx(40.0)
    assert scores.group_miou == {"head": pytest.approx(50.0), "tail": 0.0}
    assert scores.group_of() == ["head", "tail", "tail"]


def test_streaming_equals_one_shot():
    pred, gt, num_classes, _, _, _ = random_labels(3)
    accumulator = ConfusionAccumulator(num_classes, IGNORE)
    for chunk in np.array_split(np.arange(len(gt)), 5):
        accumulator.add(pred[chunk], gt[chunk])
    one_shot = confusion_matrix(pred, gt, num_classes, IGNORE)
    assert np.array_equal(accumulator.matrix, one_shot.matrix)
    assert np.array_equal(accumulator.unassigned, one_shot.unassigned)
    assert isinstance(accumulator.confusion, Confusion)


def test_bare_matrix_and_no_ground_truth():
    scores = segmentation_scores(np.array([[3, 1], [0, 0]]), ["a", "b"])
    assert scores.iou[0] == pytest.approx(75.0) and math.isnan(scores.iou[1])
    empty = segmentation_scores(np.zeros((2, 2), dtype=np.int64), ["a", "b"])
    assert math.isnan(empty.miou) and math.isnan(empty.overall_accuracy)


@pytest.mark.parametrize(
    "call",
    [
        lambda: confusion_matrix(np.array([0]), np.array([5]), 3),  # gt outside the classes, not ignored
        lambda: confusion_matrix(np.array([0]), np.array([0]), 3, ignore_label=1),  # ignore is a class
        lambda: confusion_matrix(np.array([0, 1]), np.array([0]), 3),  # sizes differ
        lambda: segmentation_scores(np.eye(2, dtype=int), ["a"]),  # name count
        lambda: segmentation_scores(np.eye(2, dtype=int), ["a", "b"], {"head": ["z"]}),  # unknown group class
    ],
)
def test_invalid_input_raises(call):
    with pytest.raises(ValueError):
        call()


def test_float_labels_raise():
    with pytest.raises(TypeError):
        confusion_matrix(np.array([0.0]), np.array([0]), 3)


def assert_png(path, min_pixels=200):
    image = imread(path)
    assert image.ndim == 3 and min(image.shape[:2]) >= min_pixels
    assert image.std() > 0  # not a blank canvas


def test_report_writes_plots_and_json_round_trips(tmp_path):
    pred, gt, num_classes, groups, absent, _ = random_labels(1)
    scores = segmentation_scores(confusion_matrix(pred, gt, num_classes), names(num_classes), groups)
    out_json = tmp_path / "eval" / "scene0000.json"
    report = segmentation_report(scores, out_json)

    assert sorted(p.name for p in out_json.parent.iterdir()) == [
        "scene0000.json",
        "scene0000_confusion.png",
        "scene0000_per_class_iou.png",
    ]
    for key in ("confusion", "per_class_iou"):
        assert_png(out_json.parent / report["plots"][key])
    loaded = json.loads(out_json.read_text())
    assert loaded == report
    assert loaded["units"].startswith("percent")
    assert loaded["classes"][absent]["iou"] is None and loaded["classes"][absent]["accuracy"] is None
    assert loaded["miou"] == pytest.approx(scores.miou)
    assert [c["name"] for c in loaded["classes"]] == names(num_classes)
    assert loaded["confusion"] == scores.confusion.matrix.tolist()
    assert set(loaded["groups"]) == set(groups)


def test_plots_in_separate_folder_and_options(tmp_path):
    pred, gt, num_classes, groups, _, _ = random_labels(2)
    scores = segmentation_scores(confusion_matrix(pred, gt, num_classes), names(num_classes), groups)
    report = segmentation_report(scores, tmp_path / "r.json", tmp_path / "plots")
    assert (tmp_path / report["plots"]["confusion"]).resolve() == (tmp_path / "plots" / "r_confusion.png").resolve()
    for normalize in ("pred", "all", None):
        assert_png(plot_confusion(scores.confusion.matrix, scores.class_names, tmp_path / f"{normalize}.png", normalize))
    assert_png(plot_per_class_iou(scores, tmp_path / "by_class.png", groups={"tail": groups["tail"]}, order="class"))
    with pytest.raises(ValueError):
        plot_confusion(scores.confusion, scores.class_names, tmp_path / "bad.png", normalize="rows")
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "bad.png").exists()


def test_write_json_nan_as_null_sorted_and_atomic(tmp_path):
    path = tmp_path / "x.json"
    write_json(path, {"b": float("nan"), "a": np.float32(1.5), "c": np.arange(3), "d": (np.int64(2), float("inf"))})
    text = path.read_text()
    assert json.loads(text) == {"a": 1.5, "b": None, "c": [0, 1, 2], "d": [2, None]}
    assert text.index('"a"') < text.index('"b"')
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})
    assert json.loads(path.read_text())["a"] == 1.5  # the failed write left the old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
