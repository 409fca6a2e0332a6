"""The batch command line (`python -m resihmr_blender run ...`) and the demo, on real files."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from resihmr_blender.cli import main, output_name
from resihmr_blender.core.image import read_png
from resihmr_blender.core.result_json import is_finite_document

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "demo" / "keypoints.json"


def test_output_names():
    assert output_name(Path("a/photo_12.json")) == "photo_12"
    assert output_name(Path("subjects/anna/keypoints.json")) == "anna"


def test_run_writes_results_and_survives_a_bad_file(tmp_path, capsys):
    inputs = tmp_path / "inputs"
    (inputs / "anna").mkdir(parents=True)
    shutil.copy(EXAMPLE, inputs / "anna" / "keypoints.json")
    (inputs / "broken.json").write_text("{ not json")
    before = {p: p.read_bytes() for p in inputs.rglob("*.json")}
    out = tmp_path / "out"
    code = main(["run", str(inputs), "--out", str(out), "--formats", "json"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    assert "broken.json" in captured.err and "failed" in captured.out
    result = json.loads((out / "anna" / "result.json").read_text())
    assert result["format"] == "resihmr-result/1" and is_finite_document(result)
    person = result["people"][0]
    kinds = {r["kind"]: r for r in person["residuals"]}
    assert set(kinds) == {"left_transtibial", "right_transradial"}
    truth = json.loads((ROOT / "examples" / "demo" / "ground_truth.json").read_text())["residuals"]
    for kind, res in kinds.items():
        assert res["accepted"] and res["reproj_error_px"] < 15
        assert abs(res["lambda"] - truth[kind]["lambda"]) < 0.15
        assert 0.0 <= res["lambda"] <= 1.0
    assert len(person["joints_3d"]) == 55 and len(person["joints_2d_body25"]) == 25
    assert result["body_model"]["embedded_default"] and len(result["body_model"]["sha256"]) == 64
    # inputs untouched, no temp files left behind
    assert before == {p: p.read_bytes() for p in inputs.rglob("*.json")}
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_person_failure_is_reported_not_nan(tmp_path, capsys):
    data = json.loads(EXAMPLE.read_text())
    data["people"].append({"pose_keypoints_2d": [0.0] * 75})  # a person with nothing usable
    path = tmp_path / "two.json"
    path.write_text(json.dumps(data))
    code = main(["run", str(path), "--out", str(tmp_path / "out")])
    assert code == 0  # the file's outputs were written; the person that could not be fitted is listed
    result = json.loads((tmp_path / "out" / "two" / "result.json").read_text())
    assert "error" in result["people"][1] and "confidences are zero" in result["people"][1]["error"]
    assert "residuals" in result["people"][0] and is_finite_document(result)
    out = capsys.readouterr().out
    assert re.search(r"\[1/1\] two: 2 people \(1 not fitted\), [\d.]+ s, \d+ warning", out)
    assert "not fitted: " in out and "person 1" in out


def test_unknown_format_and_missing_model_are_clear(tmp_path, capsys):
    assert main(["run", str(EXAMPLE), "--out", str(tmp_path), "--formats", "json,obj"]) == 2
    assert "obj" in capsys.readouterr().err
    assert main(["run", str(EXAMPLE), "--out", str(tmp_path), "--model", str(tmp_path / "SMPLX.npz")]) == 2
    assert "SMPLX.npz" in capsys.readouterr().err


def test_skip_existing_resumes(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(EXAMPLE), "--out", str(out)]) == 0
    stamp = (out / "demo" / "result.json").stat().st_mtime_ns
    assert main(["run", str(EXAMPLE), "--out", str(out), "--skip-existing"]) == 0
    assert (out / "demo" / "result.json").stat().st_mtime_ns == stamp
    assert "skip demo" in capsys.readouterr().out


def test_module_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "resihmr_blender", "run", str(EXAMPLE), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "result.json").is_file()


def test_cli_runs_as_a_script_like_blender_python(tmp_path):
    """`blender --background --python resihmr_blender/cli.py -- ARGS` runs cli.py as a script."""
    proc = subprocess.run([sys.executable, str(ROOT / "resihmr_blender" / "cli.py"), "--", "run", str(EXAMPLE),
                           "--out", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "demo" / "result.json").is_file()


@pytest.mark.parametrize("out_name", ["demo"])
def test_demo_writes_result_and_picture(tmp_path, out_name, capsys):
    from resihmr_blender.demo import run_demo

    assert run_demo(tmp_path / out_name) == 0
    image = read_png(tmp_path / out_name / "overlay.png")
    assert image.shape == (1920, 1080, 3)
    assert (image[..., 0] > 180).sum() > 500 and ((image[..., 0] > 180) & (image[..., 1] < 90)).sum() > 500  # red
    printed = capsys.readouterr().out
    assert "left_transtibial" in printed and "λ =" in printed


def test_workers_give_the_same_results(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        shutil.copy(EXAMPLE, inputs / f"{name}.json")
    assert main(["run", str(inputs), "--out", str(tmp_path / "one"), "--formats", "json"]) == 0
    assert main(["run", str(inputs), "--out", str(tmp_path / "two"), "--formats", "json", "--workers", "2"]) == 0
    for name in ("a", "b", "c"):
        one = json.loads((tmp_path / "one" / name / "result.json").read_text())["people"][0]
        two = json.loads((tmp_path / "two" / name / "result.json").read_text())["people"][0]
        assert one["residuals"][0]["lambda"] == pytest.approx(two["residuals"][0]["lambda"], abs=1e-4)
        assert one["betas"] == pytest.approx(two["betas"], abs=1e-4)


def test_ray_executor_matches_the_local_run(tmp_path):
    ray = pytest.importorskip("ray")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        shutil.copy(EXAMPLE, inputs / f"{name}.json")
    assert main(["run", str(inputs), "--out", str(tmp_path / "local"), "--formats", "json,mask"]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # the local Ray instance of this test
    try:
        assert main(["run", str(inputs), "--out", str(tmp_path / "ray"), "--formats", "json,mask",
                     "--executor", "ray"]) == 0
    finally:
        ray.shutdown()
    for name in ("a", "b"):
        local = json.loads((tmp_path / "local" / name / "result.json").read_text())["people"][0]
        remote = json.loads((tmp_path / "ray" / name / "result.json").read_text())["people"][0]
        assert local["residuals"][0]["lambda"] == pytest.approx(remote["residuals"][0]["lambda"], abs=1e-4)
        from resihmr_blender.core.metrics import mask_iou
        masks = [read_png(tmp_path / run / name / "mask.png")[..., 0] > 0 for run in ("local", "ray")]
        assert mask_iou(*masks) > 0.99


def test_no_tilt_prior_is_the_papers_eq_4_and_result_json_says_which(tmp_path, capsys):
    """result.json records how λ was found; --no-tilt-prior drops the tilt prior and the λ hypotheses, λ keeps the
    fit's own tilt (a different λ on the example's forearm), and a resumed run with the other setting is redone."""
    out = tmp_path / "out"
    assert main(["run", str(EXAMPLE), "--out", str(out), "--formats", "json", "--no-silhouette"]) == 0
    with_prior = json.loads((out / "demo" / "result.json").read_text())
    assert with_prior["rafo"]["tilt_prior"]["sin_tilt"] == 0.35
    (limb,) = [r for r in with_prior["people"][0]["residuals"] if r["kind"] == "right_transradial"]
    assert len(limb["lambda_hypotheses"]) == 2
    assert main(["run", str(EXAMPLE), "--out", str(out), "--formats", "json", "--no-silhouette", "--no-tilt-prior",
                 "--resume"]) == 0
    assert "skip demo" not in capsys.readouterr().out  # another setting: not the same run
    paper = json.loads((out / "demo" / "result.json").read_text())
    assert paper["rafo"]["tilt_prior"] is None
    (plain,) = [r for r in paper["people"][0]["residuals"] if r["kind"] == "right_transradial"]
    assert "lambda_hypotheses" not in plain and abs(plain["lambda"] - limb["lambda"]) > 1e-3
