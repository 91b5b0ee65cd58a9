"""The documentation: every public name has a docstring and a place in the API reference, the
command-line page matches the parser, and the README's links into docs/ lead somewhere.

The site itself is built by ``mkdocs build --strict`` in ``.ci/run`` (broken links, anchors
and pages left out of the navigation fail it there).
"""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import pytest

import netmind_frames
from netmind_frames.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
REFERENCE = (DOCS / "reference.md").read_text(encoding="utf-8")
CLI_PAGE = (DOCS / "cli.md").read_text(encoding="utf-8")

PUBLIC = [n for n in netmind_frames.__all__ if n != "__version__"]


def own_docstring(obj: object) -> str | None:
    """The object's own docstring: a class does not count its base class's."""
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    return getattr(obj, "__doc__", None)


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_has_a_docstring(name):
    doc = own_docstring(getattr(netmind_frames, name))
    assert doc and doc.strip(), f"netmind_frames.{name} has no docstring"


@pytest.mark.parametrize("name", ["BatchJob", "LocalBatchServer"])
def test_public_methods_and_properties_have_docstrings(name):
    cls = getattr(netmind_frames, name)
    missing = []
    for attr, value in vars(cls).items():
        if attr.startswith("_"):
            continue
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if callable(func) and not (func.__doc__ or "").strip():
            missing.append(attr)
    assert not missing, f"{name} has public members without a docstring: {missing}"


PUBLIC_MODULES = ("spark",)


def test_reference_page_lists_exactly_the_public_names():
    listed = re.findall(r"^::: netmind_frames\.(\w+)\s*$", REFERENCE, re.M)
    assert len(listed) == len(set(listed)), "a name is listed twice in docs/reference.md"
    # The public modules that `import netmind_frames` does not load (their extra may be missing)
    # have a section of their own.
    assert set(PUBLIC_MODULES) <= set(listed), f"docs/reference.md lacks {PUBLIC_MODULES}"
    listed = [name for name in listed if name not in PUBLIC_MODULES]
    assert set(listed) == set(PUBLIC), (
        f"docs/reference.md lacks {sorted(set(PUBLIC) - set(listed))}, "
        f"lists names not in __all__: {sorted(set(listed) - set(PUBLIC))}"
    )
    assert "__version__" in REFERENCE


def cli_commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", cli_commands())
def test_cli_command_is_documented(command):
    assert f"netmind-frames {command}" in CLI_PAGE


def cli_page_lines() -> list[str]:
    """Every ``netmind-frames ...`` line in the code blocks of docs/cli.md."""
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", CLI_PAGE, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing shell comment
            if line.startswith("netmind-frames "):
                lines.append(line)
    assert lines, "docs/cli.md shows no netmind-frames command"
    return lines


@pytest.mark.parametrize("line", cli_page_lines())
def test_every_command_of_the_cli_page_runs_with_help(line, capsys):
    """Each documented command exists and takes every option the page shows for it."""
    command = shlex.split(line)[1]
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0, line
    shown = capsys.readouterr().out
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
        assert re.search(rf"{re.escape(flag)}(?![\w-])", shown), f"{line}: {command} has no {flag}"


def cli_page_bullets() -> list[tuple[str, str]]:
    """``(command, bullet)`` for each bullet of docs/cli.md that starts with a command
    (``* `netmind-frames result JOB OUT` waits, retries failed rows (`--retries`)``)."""
    bullets = re.findall(
        r"^\* (`netmind-frames (\w+)[^`]*`.*?)(?=^\* |^\n|\Z)", CLI_PAGE, re.S | re.M
    )
    assert bullets
    return [(command, text) for text, command in bullets]


@pytest.mark.parametrize(("command", "bullet"), cli_page_bullets())
def test_every_option_a_cli_page_bullet_names_exists(command, bullet, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = capsys.readouterr().out
    for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", bullet):
        assert re.search(rf"{re.escape(flag)}(?![\w-])", shown), (
            f"`netmind-frames {command}` has no {flag}"
        )


def relative_links(markdown: str) -> list[str]:
    """The relative link targets of a Markdown text (no URLs, no in-page anchors)."""
    targets = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:|#", t)]


def test_readme_links_into_docs_lead_to_files():
    links = relative_links(README)
    assert any(link.startswith("docs/") for link in links), "the README links no docs page"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README.md links to missing files: {missing}"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_links_leaving_docs_lead_to_files(page):
    """A link out of docs/ (``../notebooks/x.ipynb``) works on GitHub; the site build checks
    the links between pages."""
    links = [t for t in relative_links(page.read_text(encoding="utf-8")) if t.startswith("../")]
    missing = [link for link in links if not (DOCS / link).resolve().exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_readme_is_short():
    assert len(README.splitlines()) < 200


def test_spark_module_names_have_docstrings():
    pytest.importorskip("pyspark")
    from netmind_frames import spark

    missing = [name for name in spark.__all__ if not own_docstring(getattr(spark, name))]
    members = vars(spark.SparkJob).items()
    missing += [
        f"SparkJob.{attr}"
        for attr, value in members
        if not attr.startswith("_")
        and not ((value.fget if isinstance(value, property) else value).__doc__ or "").strip()
    ]
    assert not missing, f"netmind_frames.spark has names without a docstring: {missing}"
