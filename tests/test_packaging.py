"""The distribution: its own name on PyPI (`quorum` there is someone else's), the MIT licence
as an SPDX expression with its file, every template and migration, and `quorum --version`."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bot

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_templates_migrations_and_license(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "--quiet", "-w", str(tmp_path), str(ROOT)], check=True, timeout=300)
    [wheel] = tmp_path.glob("quorum_slack-*.whl")
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    expected = [p.relative_to(ROOT).as_posix() for pattern in
                ("templates/**/*.j2", "templates/**/*.css", "bot/migrations/**/*.py",
                 "bot/migrations/*.mako")
                for p in ROOT.glob(pattern)]
    assert expected and set(expected) <= names
    dist_info = f"quorum_slack-{bot.__version__}.dist-info"
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = email.message_from_bytes(archive.read(f"{dist_info}/METADATA"))
    assert (metadata["Name"], metadata["Version"]) == ("quorum-slack", bot.__version__)
    assert metadata["License-Expression"] == "MIT"
    entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert "quorum = bot.cli:main" in entry_points


def test_version() -> None:
    result = subprocess.run([sys.executable, "-m", "bot.cli", "--version"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"quorum {bot.__version__}\n")


def test_no_document_installs_the_unrelated_quorum_package() -> None:
    """`pip install quorum` would install someone else's code from PyPI: no command in the
    docs (a fenced block, or inline code outside a warning against it) may say it."""
    unrelated = re.compile(r"pip3? install (-U |--upgrade )?quorum(\[[^\]]*\])?(\s|$|[=<>~])")
    documents = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *ROOT.glob("docs/*.md")]
    for document in documents:
        fenced = False
        for line in document.read_text().splitlines():
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            commands = [line] if fenced else [span for span in re.findall(r"`([^`]+)`", line)
                                              if "not" not in line.split(span)[0][-20:]]
            for command in commands:
                assert not unrelated.search(command), (document.name, line)
