"""Write the Grafana dashboards' JSON from :mod:`dashboards.specs`:
``python -m dashboards.build`` (from the repository root) rewrites dashboards/grafana/dashboards/*.json;
``--check`` writes nothing and exits 1 if a committed file differs from what the specs give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboards.specs import all_dashboards

OUT_DIR = Path(__file__).resolve().parent / "grafana" / "dashboards"


def rendered() -> dict[str, str]:
    """File name -> JSON text (2-space indent, trailing newline) of every dashboard."""
    return {f"{d.uid}.json": json.dumps(d.to_json(), indent=2) + "\n" for d in all_dashboards()}


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Files in ``out_dir`` that are missing, differ from the specs, or no spec gives."""
    want = rendered()
    have = {p.name for p in out_dir.glob("*.json")} if out_dir.is_dir() else set()
    wrong = [name for name, text in want.items() if name not in have or (out_dir / name).read_text() != text]
    return sorted(wrong + [name for name in have - want.keys()])


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every dashboard and delete JSON files no spec gives; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    want = rendered()
    for path in out_dir.glob("*.json"):
        if path.name not in want:
            path.unlink()
    written = []
    for name, text in want.items():
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory of the dashboard JSON files")
    args = parser.parse_args(argv)
    if args.check:
        wrong = stale(args.out)
        if wrong:
            print(f"stale dashboards in {args.out}: {', '.join(wrong)}; run python -m dashboards.build")
            return 1
        print(f"dashboards in {args.out} match the specs")
        return 0
    for path in write(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
