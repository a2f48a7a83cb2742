"""README and docs/: one screen of README, links that resolve, nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#+ (.+)$", re.M)


def heading_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_fits_one_screen():
    assert len((ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_links_resolve_inside_the_repository():
    anchors = {p: {heading_anchor(h) for h in HEADING.findall(p.read_text())} for p in PAGES}
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repository"
            assert resolved.exists(), f"{page.name}: {target} does not exist"
            if anchor and resolved.suffix == ".md":
                assert anchor in anchors[resolved], f"{page.name}: no heading for #{anchor}"


OUTSIDE = ("../" + "shared", "stack-" + "notes", "algorithms" + ".md")  # split: scanned too


def test_no_page_or_source_file_points_outside_the_repository():
    sources = [
        p
        for folder in ("agent", "envs", "configs", "benchmarks", "tests")
        for p in (ROOT / folder).rglob("*")
        if p.suffix in (".py", ".yaml", ".md")
    ]
    for path in [*PAGES, *sources, ROOT / "run.py", ROOT / "pyproject.toml"]:
        text = path.read_text()
        for outside in OUTSIDE:
            assert outside not in text, f"{path.relative_to(ROOT)} mentions {outside}"
