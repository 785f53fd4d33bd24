"""Layers point down: the contracts in pyproject.toml ([tool.importlinter]) hold for the whole tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Both contracts ran: the layers, and the core and KYC free of Ray.
    assert "Contracts: 2 kept, 0 broken." in done.stdout, done.stdout
