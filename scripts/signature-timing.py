#!/usr/bin/env python3
"""Prints the medians of the signature_timing benchmark and, for each group, the ratio of
the median with all but the last byte right to the median with the first byte wrong.

Run after `cargo bench -p titan-gate-benches --bench signature_timing`; it reads
criterion's target/criterion/<group>/<case>/new/estimates.json.
"""
import json
import pathlib
import sys

CRITERION = pathlib.Path(__file__).resolve().parent.parent / "target" / "criterion"
PAIRS = [
    ("verify_v2", "first_byte_wrong", "last_byte_wrong"),
    ("compare", "constant_time_first_byte_wrong", "constant_time_last_byte_wrong"),
    ("compare", "early_exit_first_byte_wrong", "early_exit_last_byte_wrong"),
]


def median_ns(group: str, case: str) -> float:
    path = CRITERION / group / case / "new" / "estimates.json"
    return json.loads(path.read_text())["median"]["point_estimate"]


def main() -> int:
    for group, first, last in PAIRS:
        try:
            first_ns, last_ns = median_ns(group, first), median_ns(group, last)
        except FileNotFoundError as error:
            print(f"missing benchmark result: {error.filename}; run the benchmark first", file=sys.stderr)
            return 1
        print(f"{group}/{first}: {first_ns:.3f} ns  {group}/{last}: {last_ns:.3f} ns  ratio {last_ns / first_ns:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
