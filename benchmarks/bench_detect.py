"""Detector hints on synthetic renders with known amputations and on real photos of intact people (reported,
not asserted; tests/test_detect.py asserts the real photos).

    python -m benchmarks.bench_detect [--people 60] [--seed 5] [--no-real | --real-only]
    python -m benchmarks.bench_detect --calibrate [--people 200] [--seed 1001]

Synthetic: each person of the synthetic ground truth is rendered (flat-shaded, amputations cut and sealed) over
a plain background, MediaPipe detects the keypoints, and the limb-loss hints are compared with the true residual
kinds: precision and recall per kind (a hint of the right limb but the wrong level counts as a miss and a false
alarm); why the amputated limbs that got no hint were not judged; and how well the probabilities are calibrated
(judged segments binned by their probability against the share truly absent, and the Brier score).

Real: every photo in tests/data/real_photos/ (intact people, see SOURCES.md): the suggestions for the person
`detect` uses (each one a false alarm) and, for reference, for every other person MediaPipe found in it.

--calibrate fits hints.COEFFICIENTS (a logistic regression of the segments' FEATURES) on renders of another
seed and prints the line to paste into resihmr_blender/detect/hints.py.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np

from resihmr_blender.core.avatar_mesh import build_mesh
from resihmr_blender.core.body_model import load_body_model
from resihmr_blender.core.raster import shaded
from resihmr_blender.core.residuals import RESIDUAL_KINDS
from resihmr_blender.detect import DetectError, detect, hints, read_image
from resihmr_blender.detect.mediapipe_pose import _people, rank

from .synth import make_dataset

REAL_PHOTOS = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_photos"


def render(model, person) -> np.ndarray:
    mesh = build_mesh(model, person.params, list(person.residuals.items()), pose=True)
    cam = person.camera
    background = np.tile(np.linspace(245, 205, cam.height)[:, None, None], (1, cam.width, 3))
    return shaded(mesh.posed_vertices, mesh.faces, cam, background=background, alpha=1.0)


def _segment_samples(found, truth: set[str]) -> list[tuple[np.ndarray, bool]]:
    """(FEATURES, truly absent) of every judged segment the model scores (not those seen whole)."""
    out = []
    entries = hints.measure_limbs(found.landmarks, found.mask, found.world, found.image)
    for (_, upper, lower, _, _), entry in zip(hints.LIMBS, entries):
        if entry.veto:
            continue
        absent = (upper in truth, upper in truth or lower in truth)
        out += [(x, a) for x, a in zip(entry.x, absent) if x is not None]
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iterations: int = 50) -> np.ndarray:
    """Newton's method (IRLS) for a logistic regression with a small ridge on the weights (not the intercept)."""
    design = np.c_[np.ones(len(x)), x]
    ridge = l2 * np.diag(np.r_[0.0, np.ones(x.shape[1])])
    b = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-design @ b))
        gradient = design.T @ (p - y) + ridge @ b
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + ridge
        b -= np.linalg.solve(hessian, gradient)
    return b


def calibrate(people: int, seed: int) -> None:
    model = load_body_model()
    samples = []
    for person in make_dataset(people, seed=seed, model=model):
        try:
            found = detect(render(model, person))
        except DetectError:
            continue
        samples += _segment_samples(found, set(person.residuals))
    x = np.array([s[0] for s in samples])
    y = np.array([s[1] for s in samples], float)
    b = fit_logistic(x, y)
    p = 1.0 / (1.0 + np.exp(-(np.c_[np.ones(len(x)), x] @ b)))
    print(f"# {len(y)} scored segments of {people} renders (seed {seed}), {y.mean():.2f} of them absent; "
          f"Brier score on them {np.mean((p - y) ** 2):.3f}; features {', '.join(hints.FEATURES)}")
    print(f"COEFFICIENTS = ({', '.join(f'{v:.3f}' for v in b)})")


def synthetic(people: int, seed: int) -> None:
    model = load_body_model()
    tp, fp, fn = Counter(), Counter(), Counter()
    unjudged: Counter = Counter()
    times, missed_people, scored = [], 0, []
    for person in make_dataset(people, seed=seed, model=model):
        image = render(model, person)
        start = time.perf_counter()
        try:
            found = detect(image)
        except DetectError:
            missed_people += 1
            continue
        times.append(time.perf_counter() - start)
        truth = set(person.residuals)
        suggested = {s.kind for s in found.suggestions}
        for kind in suggested & truth:
            tp[kind] += 1
        for kind in suggested - truth:
            fp[kind] += 1
        for kind in truth - suggested:
            fn[kind] += 1
        for (_, upper, lower, _, _), judgement in zip(hints.LIMBS, found.limbs):
            if (upper in truth or lower in truth) and not judgement.judged:
                unjudged[judgement.reason.split(":")[0].split(" (")[0]] += 1
        scored += [(hints.probability(x), a) for x, a in _segment_samples(found, truth)]
    print(f"## Synthetic renders ({people} people, seed {seed})\n")
    print("| kind | precision | recall | true / false hints / missed |")
    print("|---|---:|---:|---|")
    for kind in RESIDUAL_KINDS:
        p = tp[kind] / max(1, tp[kind] + fp[kind])
        r = tp[kind] / max(1, tp[kind] + fn[kind])
        print(f"| {kind} | {p:.2f} | {r:.2f} | {tp[kind]} / {fp[kind]} / {fn[kind]} |")
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    print(f"\nall kinds: precision {total_tp / max(1, total_tp + total_fp):.2f}, recall "
          f"{total_tp / max(1, total_tp + total_fn):.2f}; {missed_people} of {people} renders without a "
          f"detected person; detection {statistics.median(times) * 1000:.0f} ms median per image")
    amputated = total_tp + total_fn
    print(f"\namputated limbs not judged ({sum(unjudged.values())} of {amputated}):")
    for reason, count in unjudged.most_common():
        print(f"  {count:4d}  {reason}")
    if scored:
        p = np.array([s[0] for s in scored])
        y = np.array([s[1] for s in scored], float)
        print(f"\ncalibration of p(absent) over {len(y)} scored segments (Brier score {np.mean((p - y) ** 2):.3f}):\n")
        print("| p(absent) | segments | mean p | truly absent |")
        print("|---|---:|---:|---:|")
        for low, high in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)):
            inside = (p >= low) & (p < high)
            if inside.any():
                print(f"| {low:.1f}-{min(high, 1.0):.1f} | {inside.sum()} | {p[inside].mean():.2f} | "
                      f"{y[inside].mean():.2f} |")


def real_photos() -> None:
    photos = sorted(REAL_PHOTOS.glob("*.jpg"))
    print(f"\n## Real photos of intact people ({len(photos)}, {REAL_PHOTOS.relative_to(REAL_PHOTOS.parents[2])})\n")
    print("| photo | people found | false suggestions (person used) | highest p(absent) (person used) | "
          "(other people) | limbs not judged (person used) |")
    print("|---|---:|---|---:|---|---|")
    main_total = other_total = detected = 0
    for photo in photos:
        image = read_image(photo)
        height, width = image.shape[:2]
        try:
            found = detect(image, source=photo.name)
        except DetectError:
            print(f"| {photo.name} | 0 | - | - | - | - |")
            continue
        detected += 1
        others = []
        for candidate in sorted(_people(image, 4), key=lambda c: -rank(c, width, height))[1:]:
            others += [s.kind for s in hints.limb_loss_hints(candidate.landmarks, candidate.mask, candidate.world,
                                                             image)]
        main_total += len(found.suggestions)
        other_total += len(others)
        reasons = Counter(j.reason.split(":")[0].split(" (")[0] for j in found.limbs if not j.judged)
        print(f"| {photo.name} | {found.others + 1} | "
              f"{', '.join(f'{s.kind} ({s.score:.2f})' for s in found.suggestions) or 'none'} | "
              f"{max([max(j.probabilities) for j in found.limbs if j.judged] or [0.0]):.2f} | "
              f"{', '.join(others) or 'none'} | {', '.join(f'{n} {r}' for r, n in reasons.items()) or 'none'} |")
    print(f"\nfalse suggestions: {main_total} on {detected} photos with a person found "
          f"({10 * main_total / max(detected, 1):.1f} per 10 photos) for the person used; {other_total} more "
          "for the other people found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=None, help="renders (default 60; 200 with --calibrate)")
    parser.add_argument("--seed", type=int, default=None, help="(default 5; 1001 with --calibrate)")
    parser.add_argument("--calibrate", action="store_true", help="fit hints.COEFFICIENTS and print them")
    parser.add_argument("--no-real", action="store_true", help="skip the real photos")
    parser.add_argument("--real-only", action="store_true", help="only the real photos")
    args = parser.parse_args()
    print(f"(1-min load average {os.getloadavg()[0]:.1f} at the start)\n")
    if args.calibrate:
        calibrate(args.people or 200, 1001 if args.seed is None else args.seed)
        return
    if not args.real_only:
        synthetic(args.people or 60, 5 if args.seed is None else args.seed)
    if not args.no_real:
        real_photos()
    print(f"\n(1-min load average {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    main()
