"""Every file in the repository cites only what a clone of it contains.

Comments, docstrings and docs once pointed at design notes kept outside the repository (numbered
sections of Markdown files nobody who clones the project has). The facts now live in `docs/`;
this test keeps it so: every `*.md` a text file names must exist in the repository, and the
section sign, which only those outside notes used, must not come back. Web addresses are fine.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("ca_server", "ca_scope_client", "deploy", "bench", "tests", "scripts", ".ci", "docs")
TOP_LEVEL = ("README.md", "BENCHMARKS.md", "pyproject.toml")
SKIPPED_PARTS = {"__pycache__", ".venv", ".pytest_cache", ".ruff_cache"}
URL = re.compile(r"\w+://\S+")
MARKDOWN_PATH = re.compile(r"[\w./-]*\w\.md\b")
SECTION_SIGN = "\N{SECTION SIGN}"


def repository_text_files() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL]
    for folder in SCANNED:
        files += [
            path
            for path in (ROOT / folder).rglob("*")
            if path.is_file() and not SKIPPED_PARTS & set(path.parts)
        ]
    return sorted(path for path in files if path != Path(__file__).resolve())


def exists_in_repository(reference: str, cited_from: Path) -> bool:
    """`reference` (as written) names a file of the repository: from the root, from the citing
    file's folder, or from `docs/`."""
    reference = reference.removeprefix("./")
    return any((base / reference).is_file() for base in (ROOT, cited_from.parent, ROOT / "docs"))


def outside_references() -> list[str]:
    found = []
    for path in repository_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary files
        where = path.relative_to(ROOT)
        for number, line in enumerate(text.splitlines(), 1):
            line = URL.sub("", line)
            if SECTION_SIGN in line:
                found.append(f"{where}:{number}: section sign: {line.strip()[:90]}")
            for reference in MARKDOWN_PATH.findall(line):
                if not exists_in_repository(reference, path):
                    found.append(f"{where}:{number}: {reference} is not in the repository")
    return found


def test_every_cited_file_is_in_the_repository() -> None:
    found = outside_references()
    assert found == [], "cite docs/ instead:\n" + "\n".join(found)


def test_the_architecture_page_is_linked_from_the_readme() -> None:
    assert "(docs/architecture.md)" in (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "architecture.md").read_text()
    for package in ("ca_server", "ca_scope_client"):
        for module in sorted((ROOT / package).rglob("*.py")):
            name = module.relative_to(ROOT / package).as_posix()
            assert f"`{name}`" in page, f"{package}/{name} is not in the module map"
