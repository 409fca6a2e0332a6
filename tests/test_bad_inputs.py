"""`resihmr run` against the bad-input corpus (tests/bad_inputs.py), full disks, a failing exporter and
interrupts: every problem is one line naming the file, never a traceback; the exit status says what happened;
inputs stay byte-identical; the good files of a mixed batch are still written, unchanged; a killed or
interrupted batch resumes to the same bytes.

Most cases run in-process (`cli.main`) on inputs without people (no fit); the interrupts run the real command
in a subprocess. The fitted references use --batch-size 1 where bytes are compared: a person fitted in one batch
with others differs from the same person alone by ~1e-13 (float64 reductions over a different batch shape),
below what is tested (1e-9, see test_resume_equals_a_clean_run) but visible in the printed digits.
"""
from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bad_inputs import CASES, KEYPOINT_CASES, OK, POSE, RES, good_inputs, input_files, no_people, write
from documents import assert_documents_close, without_timings

from resihmr_blender import outputs
from resihmr_blender.cli import main, output_name, safe_name
from resihmr_blender.core import atomic

ROOT = Path(__file__).resolve().parents[1]
FAILING_FILES = [c for c in KEYPOINT_CASES if c.status != OK]
STDERR_LINE = re.compile(r"^(error|warning|interrupted|resihmr|resihmr run): ")
TIMINGS = re.compile(r'"timings_s": \{[^}]*\}')
SOURCE = re.compile(r'"source": "[^"]*"')


def stable_bytes(path: Path, any_source: bool = False) -> bytes:
    """result.json without its timings (they differ from run to run), byte for byte otherwise; `any_source`:
    also without the input's path (a copy of the input elsewhere)."""
    text = TIMINGS.sub('"timings_s": {}', path.read_text(encoding="utf-8"))
    return (SOURCE.sub('"source": ""', text) if any_source else text).encode()


def complete(folder: Path) -> bool:
    return (folder / outputs.DONE_RECORD).is_file()


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if atomic.TEMP_MARK in p.name]


def assert_clean_stderr(err: str) -> None:
    assert "Traceback" not in err, err
    for line in err.splitlines():
        assert not line.strip() or STDERR_LINE.match(line), f"stray stderr line: {line!r}"


# ---------------------------------------------------------------------------------------------------------------
# The corpus, in-process


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case, tmp_path, capsys, monkeypatch):
    argv = case.build(tmp_path)
    before = input_files(tmp_path, out=tmp_path / "out")
    if case.cwd:
        monkeypatch.chdir(tmp_path / case.cwd)
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out
    assert_clean_stderr(err)
    assert code == case.status, f"exit {code}, expected {case.status}\n{out}\n{err}"
    if case.message:
        assert any(re.search(case.message, line) for line in err.splitlines()), f"{case.message!r} not in\n{err}"
    if case.status != OK:
        assert "error: " in err
    after = input_files(tmp_path, out=tmp_path / "out")
    assert {k: after.get(k) for k in before} == before  # every input still there, byte for byte
    if case.output:
        assert any(re.search(case.output, line) for line in out.splitlines()), f"{case.output!r} not in\n{out}"
    for name in case.complete:
        assert complete(tmp_path / name), sorted(str(p) for p in tmp_path.rglob("*"))
    if case.check is not None:
        case.check(tmp_path)
    assert not temp_files(tmp_path)


def test_corpus_covers_every_class():
    groups = {c.group for c in CASES}
    assert groups == {"json", "types", "numbers", "nan", "lengths", "coco", "model", "flags", "paths", "photo"}
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    path = write(tmp_path / "broken.json", "{ not json")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("RESIHMR_DEBUG", "1")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_help_documents_the_exit_status(capsys):
    assert main(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Exit status" in text and "130 interrupted" in text and "--resume" in text


# ---------------------------------------------------------------------------------------------------------------
# Names and guards, as units


@pytest.mark.parametrize("text,expected", [
    ("..", "input"), (".", "input"), ("", "input"), ("   ", "input"), (".hidden", "hidden"), ("a/b", "a_b"),
    ("a\\b", "a_b"), ("x\ny", "x_y"), ("/etc/passwd", "_etc_passwd"), ("Zoë", "Zoë"), ("名" * 100, "名" * 50),
])
def test_safe_names(text, expected):
    assert safe_name(text) == expected


def test_output_names_resolve_dot_dot(tmp_path, monkeypatch):
    (tmp_path / "anna" / "work").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "anna" / "work")
    assert output_name(Path("../keypoints.json")) == "anna"
    assert output_name(Path("../../anna/./keypoints.json")) == "anna"
    assert output_name(Path("/keypoints.json")) == "keypoints"


def test_targets_are_checked(tmp_path):
    root = tmp_path / "out"
    (root / "a").mkdir(parents=True)
    assert outputs.check_target(root / "a", "result.json", root) == root / "a" / "result.json"
    for name in ("../../x.json", "/etc/passwd"):
        with pytest.raises(outputs.OutputError, match="outside the output folder"):
            outputs.check_target(root / "a", name, root)
    with pytest.raises(outputs.OutputError, match="would overwrite the input"):
        outputs.check_target(root / "a", "result.json", root, protect=[root / "a" / "result.json"])


def test_one_line_of_a_blender_exporter_error():
    blender = RuntimeError("Error: Python: Traceback (most recent call last):\n  File \"export.py\", line 117, in "
                           "save_gltf\nOSError: [Errno 28] No space left on device\nLocation: bpy/ops.py:109\n")
    assert outputs.one_line(blender) == "OSError: [Errno 28] No space left on device (see --debug)"
    assert outputs.one_line(OverflowError("int too large")) == "OverflowError: int too large"
    assert outputs.one_line(KeyError("f")) == "KeyError: 'f'"


# ---------------------------------------------------------------------------------------------------------------
# Resume without fitting anybody


def _nobody_run(tmp_path, *flags):
    inputs = tmp_path / "in"
    if not inputs.exists():
        write(inputs / "x.json", no_people())
        write(inputs / "y.json", no_people())
    return main(["run", str(inputs), "--out", str(tmp_path / "out"), *flags])


def test_resume_checks_the_record(tmp_path, capsys):
    out = tmp_path / "out"
    assert _nobody_run(tmp_path, "--formats", "json") == 0
    record = json.loads((out / "x" / outputs.DONE_RECORD).read_text())
    assert set(record["outputs"]) == {"result.json"} and len(record["fingerprint"]["input_sha256"]) == 64
    capsys.readouterr()
    assert _nobody_run(tmp_path, "--formats", "json", "--skip-existing") == 0  # the old name still works
    assert capsys.readouterr().out.count("skip ") == 2
    # more formats than were written: redone
    assert _nobody_run(tmp_path, "--formats", "json,mask", "--resume") == 0
    printed = capsys.readouterr().out
    assert "redo x: other formats were asked for" in printed and (out / "x" / "mask.png").is_file()
    # fewer formats: complete
    assert _nobody_run(tmp_path, "--formats", "mask", "--resume") == 0
    assert "skip x" in capsys.readouterr().out
    # an output deleted, an output changed, the input changed, another setting: redone
    (out / "x" / "mask.png").unlink()
    (out / "y" / "result.json").write_text("{}")
    assert _nobody_run(tmp_path, "--formats", "json,mask", "--resume") == 0
    printed = capsys.readouterr().out
    assert "redo x: mask.png is missing" in printed and "redo y: result.json changed" in printed
    write(tmp_path / "in" / "x.json", no_people(width=65))
    assert _nobody_run(tmp_path, "--formats", "json,mask", "--resume", "--threshold", "9") == 0
    printed = capsys.readouterr().out
    assert "redo x: input sha256 changed" in printed and "redo y: threshold px changed" in printed


def test_killed_run_temp_files_are_removed_only_inside_out(tmp_path, capsys):
    assert _nobody_run(tmp_path, "--formats", "json") == 0
    left = [tmp_path / "out" / "x" / ".result.k2j4h1.resihmr-tmp.json",
            tmp_path / "out" / "y" / ".avatar.abcdefgh.resihmr-tmp.glb"]
    keep = [tmp_path / "in" / ".result.k2j4h1.resihmr-tmp.json",  # outside --out
            tmp_path / "out" / "y" / "notes.resihmr-tmp.txt"]  # not a temp name (no leading dot)
    for path in left + keep:
        write(path, b"")
    capsys.readouterr()
    assert _nobody_run(tmp_path, "--formats", "json", "--resume") == 0
    assert "removed 2 temp file(s)" in capsys.readouterr().out
    assert not any(p.exists() for p in left) and all(p.exists() for p in keep)


# ---------------------------------------------------------------------------------------------------------------
# Runs that fit somebody


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """Two real people and their uninterrupted outputs (json + mask, one person per batch)."""
    inputs = tmp_path_factory.mktemp("good_inputs")
    good_inputs(inputs)
    out = tmp_path_factory.mktemp("good_reference")
    assert main(["run", str(inputs), "--out", str(out), "--formats", "json,mask", "--batch-size", "1"]) == 0
    return inputs, out


def same_outputs(folder: Path, reference: Path, any_source: bool = False) -> None:
    assert complete(folder)
    assert stable_bytes(folder / "result.json", any_source) == stable_bytes(reference / "result.json", any_source)
    assert (folder / "mask.png").read_bytes() == (reference / "mask.png").read_bytes()


def test_mixed_batch_full_disk_and_bad_files(good, tmp_path, capsys, monkeypatch):
    """Every keypoints case of the corpus, two files whose disk fills up (on the rename of mask.png, on the
    write of result.json) and one whose completion record cannot be written, beside a good file."""
    inputs, reference = good
    for case in FAILING_FILES:
        case.build(tmp_path)
    folder = tmp_path / "in"
    shutil.copy(inputs / "a.json", folder / "a.json")
    for name in ("full_rename", "full_write", "full_record"):
        write(folder / f"{name}.json", no_people())
    before = input_files(tmp_path, out=tmp_path / "out")

    def full(path) -> OSError:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    real_replace, real_open = os.replace, open

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(os.path.join("full_rename", "mask.png")) or \
                str(dst).endswith(os.path.join("full_record", outputs.DONE_RECORD)):
            raise full(dst)
        return real_replace(src, dst, *args, **kwargs)

    class FullFile:
        def __init__(self, path):
            self.path, self.handle = path, real_open(path, "wb")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise full(self.path)

    def opener(path, mode="r", *args, **kwargs):
        if "full_write" in str(path) and "w" in mode:
            return FullFile(path)
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(atomic, "open", opener, raising=False)
    code = main(["run", str(folder), "--out", str(tmp_path / "out"), "--formats", "json,mask", "--batch-size", "1"])
    monkeypatch.undo()
    out, err = capsys.readouterr()
    assert code == 1
    assert_clean_stderr(err)
    for case in FAILING_FILES:
        assert any(re.search(case.message, line) for line in err.splitlines()), case.id
    for name, what in (("full_rename", "mask.png"), ("full_write", "result.json"),
                       ("full_record", re.escape(outputs.DONE_RECORD))):
        assert re.search(rf"^error: \S+{name}\.json: writing outputs failed: ({what}: )?\[Errno 28\] No space left",
                         err, re.M), name
        assert not complete(tmp_path / "out" / name)
    same_outputs(tmp_path / "out" / "a", reference / "a", any_source=True)
    assert re.search(r"^\[\d+/\d+\] a: 1 people, [\d.]+ s, 0 warning\(s\)", out, re.M)
    assert re.search(rf"^done: 1 of {len(FAILING_FILES) + 4} file\(s\) written, {len(FAILING_FILES) + 3} failed",
                     out, re.M)
    after = input_files(tmp_path, out=tmp_path / "out")
    assert {k: after.get(k) for k in before} == before
    assert not temp_files(tmp_path)


def test_exporter_failure_is_one_line(good, tmp_path, capfd):
    """A real glTF export that fails for lack of room (a file-size limit makes the disk 'full' at 300 kB): the
    exporter's traceback stays off the terminal; one line names the file, the output and the cause."""
    inputs, _ = good
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, limit[1]))
    try:
        code = main(["run", str(inputs / "a.json"), "--out", str(tmp_path / "out"), "--formats", "json,glb"])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, previous)
    out, err = capfd.readouterr()
    assert code == 1
    assert_clean_stderr(err)
    assert re.search(r"^error: \S+a\.json: writing outputs failed: avatar\.glb: OSError: \[Errno 27\] File too "
                     r"large \(see --debug\)$", err, re.M), err
    assert "Traceback" not in out
    assert not complete(tmp_path / "out" / "a") and not (tmp_path / "out" / "a" / "avatar.glb").exists()
    assert not temp_files(tmp_path)


# ---------------------------------------------------------------------------------------------------------------
# Interrupts: the real command in a subprocess


class Run:
    """The real command in a subprocess, its stdout collected line by line as it comes."""

    def __init__(self, inputs: Path, out: Path):
        import threading

        self.proc = subprocess.Popen([sys.executable, "-m", "resihmr_blender", "run", str(inputs), "--out", str(out),
                                      "--formats", "json,mask", "--batch-size", "1"], cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")))
        self.reader.start()

    def wait_until(self, ready, timeout: float = 240.0) -> None:
        end = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, (self.lines, self.proc.stderr.read())
            assert time.monotonic() < end, "timed out"
            time.sleep(0.005)

    def finish(self, timeout: float = 240.0) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code, "".join(self.lines), self.proc.stderr.read()


def resume(inputs: Path, out: Path, capsys) -> str:
    code = main(["run", str(inputs), "--out", str(out), "--formats", "json,mask", "--batch-size", "1", "--resume"])
    printed = capsys.readouterr()
    assert code == 0, printed
    assert_clean_stderr(printed.err)
    return printed.out


@pytest.mark.parametrize("point", ["first result.json written", "first file fitting"])
def test_sigint_stops_after_the_current_file_and_resume_finishes(good, tmp_path, capsys, point):
    inputs, reference = good
    before = input_files(inputs)
    out = tmp_path / "out"
    run = Run(inputs, out)
    if point == "first result.json written":
        run.wait_until(lambda: (out / "a" / "result.json").exists())
    else:
        run.wait_until(lambda: any(line.startswith("running ") for line in run.lines))
        time.sleep(0.05)  # inside the first file (a fit takes ~0.2 s now: later, the whole run may be done)
    run.proc.send_signal(signal.SIGINT)
    code, stdout, stderr = run.finish()
    assert code == 130, (stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted: stopped after") and "--resume" in lines[0], stderr
    if point == "first result.json written":
        same_outputs(out / "a", reference / "a")  # the current file was finished
    else:
        assert complete(out / "a") or not (out / "a" / "result.json").exists()
    assert not (out / "b").exists()  # the next one not started
    assert not temp_files(out)
    printed = resume(inputs, out, capsys)
    assert "[2/2] b: 1 people" in printed
    assert ("skip a: complete" in printed) != ("[1/2] a:" in printed)  # a either kept or done now, never twice
    assert "skip a: complete" in printed or point == "first file fitting"
    for name in ("a", "b"):
        same_outputs(out / name, reference / name)
    assert input_files(inputs) == before


@pytest.mark.parametrize("point", ["a/result.json", f"a/{outputs.DONE_RECORD}"])
def test_sigkill_then_resume_loses_nothing(good, tmp_path, capsys, point):
    inputs, reference = good
    out = tmp_path / "out"
    run = Run(inputs, out)
    run.wait_until(lambda: (out / point).exists())  # inside a's outputs, or between a and b
    run.proc.kill()
    code, _, _ = run.finish(timeout=60)
    assert code == -signal.SIGKILL
    stale = out / "a" / ".mask.q8w7e6r5.resihmr-tmp.png"  # what a kill inside a write leaves behind
    write(stale, b"")
    printed = resume(inputs, out, capsys)
    assert "removed" in printed and not stale.exists() and not temp_files(out)
    for name in ("a", "b"):
        same_outputs(out / name, reference / name)


def test_resume_equals_a_clean_run(good, tmp_path, capsys):
    """Default batches: the clean run fits both people together, the resumed one fits the lost file alone."""
    inputs, _ = good
    clean, part = tmp_path / "clean", tmp_path / "part"
    assert main(["run", str(inputs), "--out", str(clean), "--formats", "json"]) == 0
    shutil.copytree(clean, part)
    shutil.rmtree(part / "b")
    assert main(["run", str(inputs), "--out", str(part), "--formats", "json", "--resume"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    for name in ("a", "b"):
        docs = [json.loads((run / name / "result.json").read_text()) for run in (clean, part)]
        assert_documents_close(*(without_timings(d) for d in docs))


@pytest.mark.parametrize("signals, code, word", [((signal.SIGINT, signal.SIGINT), 130, "interrupted"),
                                                  ((signal.SIGTERM,), 143, "terminated")])
def test_second_sigint_or_sigterm_stops_at_once(tmp_path, signals, code, word):
    """Both signals land while the first file is being fitted: it holds 24 people fitted one at a time (seconds of
    work), so the first Ctrl-C cannot end the run gracefully before the second arrives (with one person the run
    could reach its between-files check and stop cleanly first: a right behaviour, the wrong test)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    good_inputs(inputs)
    crowd = json.loads((inputs / "a.json").read_text())
    person = crowd["people"][0]
    crowd["people"] = [json.loads(json.dumps(person)) for _ in range(24)]
    for k, entry in enumerate(crowd["people"]):  # each a few pixels apart (the same person would fit identically)
        for field in (POSE, RES):
            values = entry[field]
            for i in range(0, len(values), 3):
                if values[i + 2] > 0:
                    values[i] += 2.0 * k
    write(inputs / "a.json", crowd)
    out = tmp_path / "out"
    run = Run(inputs, out)
    run.wait_until(lambda: any(line.startswith("running ") for line in run.lines))
    time.sleep(0.4)  # past the set-up and the reading of both files, well inside the first file's fit (~3 s)
    for k, signum in enumerate(signals):
        if k:
            time.sleep(0.02)
        run.proc.send_signal(signum)
    status, stdout, stderr = run.finish(timeout=120)
    assert status == code, (stdout, stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{word}: stopped at once"), stderr
    assert not temp_files(tmp_path)
    for folder in out.glob("*") if out.exists() else []:
        assert complete(folder) or not (folder / "mask.png").exists()
