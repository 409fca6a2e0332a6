"""Comparing result documents (result.json) number by number, for the tests that check independence."""
from __future__ import annotations

import copy


def without_timings(document: dict) -> dict:
    document = copy.deepcopy(document)
    for person in document["people"]:
        person.pop("timings_s", None)
    return document


def assert_documents_close(a, b, atol: float = 1e-9, path: str = "") -> None:
    """Equal structure and strings; numbers within atol (the body runs in float64: a person fitted in a batch of
    others rounds differently from one alone by ~1e-13; in float32 it was 1.1e-5 m and 2.0e-3 px)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_documents_close(a[k], b[k], atol, f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_documents_close(x, y, atol, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        assert abs(a - b) <= atol, f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
