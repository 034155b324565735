"""A non-editable install carries every template and migration."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_templates_and_migrations(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--quiet", "-w", str(tmp_path), str(ROOT)], check=True, timeout=120)
    [wheel] = tmp_path.glob("quorum-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [p.relative_to(ROOT).as_posix() for pattern in
                ("templates/**/*.j2", "templates/**/*.css", "bot/migrations/**/*.py",
                 "bot/migrations/*.mako")
                for p in ROOT.glob(pattern)]
    assert expected and set(expected) <= names
