"""The command line the measure-then-tabulate benchmarks share: measure into a JSON, or print its table."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Callable


def run(argv: list[str] | None, doc: str, measure: Callable[[Path, int], dict], markdown_table: Callable[[dict], str],
        result_path: Path, inputs: int) -> int:
    """``--markdown`` prints ``markdown_table`` of the JSON at ``--json-out``; otherwise ``measure`` (in a
    temporary folder, ``--inputs`` samples) writes that JSON and prints the table."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=inputs)
    ap.add_argument("--json-out", type=Path, default=result_path)
    ap.add_argument("--markdown", action="store_true", help="print the docs table from the committed JSON")
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(args.json_out.read_text())))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(Path(tmp), args.inputs)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(markdown_table(result))
    return 0
