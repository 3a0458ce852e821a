"""Regenerate the bundled digits example (model.keras, train/calib/eval .npz).

Run from the repository root: ``python examples/digits/make_example.py``.
Training is seeded; the committed files are what this script writes.
"""

from pathlib import Path

from edgekit.examples import write_digits_example

if __name__ == "__main__":
    paths = write_digits_example(Path(__file__).resolve().parent, "keras3")
    for name, p in paths.items():
        print(f"{name:6} {p} {p.stat().st_size:,} B")
