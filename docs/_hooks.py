"""MkDocs hooks: the notebooks, the included files and the links that leave ``docs/``.

The pages in ``docs/`` are also read on GitHub, where a notebook is ``../notebooks/x.ipynb`` and
the contributor guide ``../CONTRIBUTING.md``. The site has no such paths: the notebooks are
added here as pages under ``notebooks/`` (rendered by mkdocs-jupyter, with their committed
outputs), and each such link is rewritten to the page that holds it on the site.

A page whose line reads ``--8<-- "CHANGELOG.md"`` shows that file of the repository's root
(no copy to keep in sync), with its links to the root's files pointed at their pages too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]

#: A link target that leaves docs/ on GitHub, and where the same thing lives on the site.
LINKS = {
    "../notebooks/": "notebooks/",
    "../CONTRIBUTING.md": "contributing.md",
    "../CHANGELOG.md": "changelog.md",
    "../README.md": "index.md",
}


@event_priority(100)  # before mkdocs-jupyter's on_files, which picks up the notebooks
def on_files(files: Files, config: Any) -> Files:
    """Add every notebook of ``notebooks/`` as ``notebooks/NAME.ipynb``."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{path.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


#: The same, for a link written in a file of the root (README.md links ``CHANGELOG.md``).
ROOT_LINKS = {k.removeprefix("../"): v for k, v in LINKS.items()}

INCLUDE = re.compile(r'^--8<-- "([\w.-]+)"$', re.M)


def _rewrite(markdown: str, links: dict[str, str]) -> str:
    pattern = "|".join(re.escape(k) for k in links)
    return re.sub(rf"\]\(({pattern})", lambda m: "](" + links[m.group(1)], markdown)


def _include(match: re.Match[str]) -> str:
    text = (ROOT / match.group(1)).read_text(encoding="utf-8")  # a missing file fails the build
    return _rewrite(text, ROOT_LINKS)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Expand the root files included, and point links that leave ``docs/`` at site pages."""
    return _rewrite(INCLUDE.sub(_include, markdown), LINKS)
