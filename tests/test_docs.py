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


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        for outside in ("../shared", "stack-notes", "algorithms.md"):
            assert outside not in text, f"{page.name} mentions {outside}"
