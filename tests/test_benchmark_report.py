"""The benchmark report: metrics on hand-made numbers, targets from the config, and a small run's report complete."""
from __future__ import annotations

import math
import os
import platform
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import run as bench
from resihmr_blender.core.metrics import (
    SUMMARY_FIELDS,
    MethodScores,
    keypoint_errors,
    mask_iou,
    mean_or_nan,
    mpjpe,
    per_point_errors,
)

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ROOT / "benchmarks" / "targets.toml"
OPS = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}


# ---------------------------------------------------------------------------------------------------------------
# Metrics on hand-made numbers


def test_mpjpe_over_masked_points():
    gt = np.zeros((4, 2))
    pred = np.array([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [100.0, 100.0]])
    mask = np.array([True, True, True, False])  # the far point does not exist on the person: not scored
    np.testing.assert_allclose(per_point_errors(pred, gt, mask), [5.0, 1.0, 10.0])
    assert mpjpe(pred, gt, mask) == pytest.approx(16.0 / 3.0)
    assert math.isnan(mpjpe(pred, gt, np.zeros(4, bool)))  # nothing to score is not a perfect score
    with pytest.raises(ValueError):
        mpjpe(pred, gt[:3], mask)


def test_body_is_intact_and_residual_pooled_over_points_not_people():
    scores = MethodScores()
    # person A: 2 intact points with errors 1 and 3, one residual endpoint 5 px off
    a = keypoint_errors(np.array([[1.0, 0], [0, 3.0], [9.0, 9.0]]), np.zeros((3, 2)), np.array([True, True, False]),
                        np.array([[3.0, 4.0], [7.0, 7.0]]), np.zeros((2, 2)), np.array([True, False]))
    np.testing.assert_allclose(a.body, [1.0, 3.0, 5.0])
    scores.add_keypoints(a, hallucination_case=True)
    # person B: one intact point 8 px off, no residual endpoint present
    b = keypoint_errors(np.array([[8.0, 0]]), np.zeros((1, 2)), np.array([True]),
                        np.array([[1.0, 1.0]]), np.zeros((1, 2)), np.array([False]))
    scores.add_keypoints(b, hallucination_case=False)
    s = scores.summary()
    assert s["intact_mpjpe_px"] == pytest.approx((1 + 3 + 8) / 3)  # not the mean of the people's means (5)
    assert s["residual_mpjpe_px"] == pytest.approx(5.0)
    assert s["body_mpjpe_px"] == pytest.approx((1 + 3 + 5 + 8) / 4)
    assert s["intact_halluc_mpjpe_px"] == pytest.approx(2.0)  # person A only


def test_mask_iou_on_hand_made_masks():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0:2, 0:2] = True  # 4 pixels
    b[0:2, 1:3] = True  # 4 pixels, 2 shared
    assert mask_iou(a, b) == pytest.approx(2 / 6)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, np.zeros((4, 4), bool)) == 0.0
    scores = MethodScores()
    scores.add_masks(a, b)
    scores.add_masks(a, a)
    assert scores.summary()["iou"] == pytest.approx((2 / 6 + 1) / 2)  # mIoU: a mean over people
    with pytest.raises(ValueError):
        scores.add_masks(a, np.zeros((2, 2), bool))


def test_lambda_and_length_errors():
    scores = MethodScores()
    scores.add_residual("left_transradial", 0.4, 0.5, 0.20, 0.25)
    scores.add_residual("left_transradial", 0.9, 0.6, 0.10, 0.10)
    scores.add_residual("right_transfemoral", 0.5, 0.5, 0.30, 0.28)
    s = scores.summary()
    assert s["lambda_mae"] == pytest.approx((0.1 + 0.3 + 0.0) / 3)
    assert s["length_error_cm"] == pytest.approx((5 + 0 + 2) / 3)
    assert scores.lambda_mae_by_kind() == pytest.approx({"left_transradial": 0.2, "right_transfemoral": 0.0})
    assert set(s) == set(SUMMARY_FIELDS)
    assert math.isnan(mean_or_nan([]))


# ---------------------------------------------------------------------------------------------------------------
# Targets


def test_targets_file_is_complete_and_known():
    raw = tomllib.loads(TARGETS.read_text())["target"]
    targets = bench.load_targets(TARGETS)
    assert [t.id for t in targets] == [e["id"] for e in raw]
    for t in targets:
        assert t.metric in bench.metric_names() and t.comparator in OPS
    assert {t.id for t in targets} >= {"residual-vs-proxy", "residual-px", "intact-px", "lambda-mae",
                                       "single-person-time", "batched-throughput", "iou-vs-trusting"}
    assert "TRUE tilt" in next(t.notes for t in targets if t.id == "lambda-mae")  # the λ explanation is kept


@pytest.mark.parametrize("body, message", [
    ('id = "x"\ndescription = "d"\nmetric = "ours.nope"\ncomparator = "<="\nthreshold = 1', "unknown metric"),
    ('id = "x"\ndescription = "d"\nmetric = "ours.iou"\ncomparator = "=="\nthreshold = 1', "comparator"),
    ('id = "x"\ndescription = "d"\nmetric = "ours.iou"\ncomparator = "<="', "missing threshold"),
    ('id = "x"\ndescription = "d"\nmetric = "ours.iou"\ncomparator = "<="\nthreshold = 1\nrefrence = "ours.iou"',
     "unknown keys"),
])
def test_bad_targets_are_refused(tmp_path, body, message):
    path = tmp_path / "t.toml"
    path.write_text("[[target]]\n" + body + "\n")
    with pytest.raises(ValueError, match=message):
        bench.load_targets(path)


def test_evaluate_compares_against_threshold_or_scaled_reference():
    t = [bench.Target("a", "", "ours.residual_mpjpe_px", "<=", 8.0),
         bench.Target("b", "", "ours.residual_mpjpe_px", "<=", 0.25, "intact_fit_midpoint.residual_mpjpe_px"),
         bench.Target("c", "", "ours.iou", ">", 1.0, "intact_fit_midpoint.iou"),
         bench.Target("d", "", "ours.lambda_mae", "<=", 0.06)]
    metrics = {"ours.residual_mpjpe_px": 8.0, "intact_fit_midpoint.residual_mpjpe_px": 30.0, "ours.iou": 0.8,
               "intact_fit_midpoint.iou": 0.8, "ours.lambda_mae": float("nan")}
    verdicts = bench.evaluate(t, metrics)
    assert [v.reached for v in verdicts] == [True, False, False, False]  # 8 ≤ 8; 8 > 7.5; 0.8 = 0.8; NaN
    assert verdicts[1].bound == pytest.approx(7.5)


# ---------------------------------------------------------------------------------------------------------------
# A small run's report


def _rows(text: str, heading: str) -> list[list[str]]:
    """The cells of the first table under a heading, below its header and alignment rows."""
    lines = text.split(f"## {heading}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append([c.strip() for c in line.strip("|").split("|")])
    return table[2:]


def test_small_run_writes_a_complete_report(tmp_path):
    # the configured targets plus one that cannot be reached and one that cannot be missed, each with notes
    extra = ('\n[[target]]\nid = "impossible"\ndescription = "d"\nmetric = "ours.iou"\ncomparator = ">"\n'
             'threshold = 2.0\nnotes = "MISSED-NOTE-MARKER"\n'
             '\n[[target]]\nid = "certain"\ndescription = "d"\nmetric = "ours.failures"\ncomparator = "<="\n'
             'threshold = 1000\nnotes = "REACHED-NOTE-MARKER"\n')
    targets_path = tmp_path / "targets.toml"
    targets_path.write_text(TARGETS.read_text() + extra)
    out = tmp_path / "RESULTS.md"
    # one torch thread: two spin-waiting threads crawl when other work shares the cores
    argv = ["--people", "2", "--timing-people", "1", "--iou-scale", "0.1", "--threads", "1",
            "--targets", str(targets_path), "--out", str(out)]
    threads = torch.get_num_threads()
    report = bench.main(argv)
    assert torch.get_num_threads() == threads

    text = out.read_text()
    assert text == report["text"]
    assert sorted(os.listdir(tmp_path)) == ["RESULTS.md", "targets.toml"]  # no temp file left behind
    assert f"- Command: `python -m benchmarks.run {' '.join(argv)}`" in text
    machine = next(line for line in text.splitlines() if line.startswith("- Machine: "))
    assert platform.platform() in machine and f"{os.cpu_count()} logical cores" in machine
    assert "torch threads 1" in machine and platform.python_version() in machine and np.__version__ in machine
    assert "- Date: " in text and "ResiHMR λ MAE per kind: " in text and "Fit + RAFO time per person: " in text

    metrics = report["metrics"]
    rows = _rows(text, "Metrics")
    assert [r[0] for r in rows] == [label for label, _ in bench.METHODS.values()]
    ours = dict(zip(["method", *SUMMARY_FIELDS], rows[0]))
    assert float(ours["residual_mpjpe_px"]) == pytest.approx(metrics["ours.residual_mpjpe_px"], abs=0.006)
    assert float(ours["iou"]) == pytest.approx(metrics["ours.iou"], abs=0.0006)
    assert 0 < metrics["ours.residual_mpjpe_px"] < metrics["joint_collapse.residual_mpjpe_px"]

    configured = tomllib.loads(targets_path.read_text())["target"]
    rows = _rows(text, "Against the targets")
    assert [r[0] for r in rows] == [e["id"] for e in configured]  # one row per configured target, in order
    for entry, row in zip(configured, rows):
        value = metrics[entry["metric"]]
        bound = entry["threshold"] * (metrics[entry["reference"]] if "reference" in entry else 1.0)
        reached = math.isfinite(value) and OPS[entry["comparator"]](value, bound)
        assert row[-1] == ("reached" if reached else "**missed**"), entry["id"]
        assert row[3].startswith(bench.fmt(entry["metric"], value)), entry["id"]
        assert row[4].endswith(bench.fmt(entry["metric"], bound)), entry["id"]
        notes = " ".join(entry.get("notes", "").split())
        if notes:
            assert (notes in text) == (not reached), entry["id"]  # notes shown exactly for the missed targets
    assert "MISSED-NOTE-MARKER" in text and "REACHED-NOTE-MARKER" not in text


def test_committed_results_were_written_by_the_runner_with_these_targets():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert "Written whole by `benchmarks/run.py`" in text and "- Machine: " in text
    ids = [e["id"] for e in tomllib.loads(TARGETS.read_text())["target"]]
    assert [r[0] for r in _rows(text, "Against the targets")] == ids
