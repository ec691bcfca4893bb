"""The documentation keeps up with the code: every command and option in docs/cli.md, live links, a short README."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest

from entropy_elbo.cli import main
from entropy_elbo.elbo import Estimate

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
SHARED_SECTIONS = ("Conventions of every command", "Reading a checkpoint")  # options tabled once for all commands
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def without_code(text: str) -> str:
    """Markdown with fenced blocks and inline code removed, so that only prose links remain."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def sections(text: str) -> dict[str, str]:
    """Level-2 heading (backticks dropped) -> its text up to the next level-2 heading."""
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].replace("`", "").strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def anchors(text: str) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def long_names(command: click.Command) -> list[str]:
    """Every --long name of the command's options, hidden ones and --no- forms included."""
    return [name for p in command.params if isinstance(p, click.Option)
            for name in [*p.opts, *p.secondary_opts] if name.startswith("--")]


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def test_every_command_has_help_and_its_own_section_in_the_cli_reference():
    doc = sections(CLI_DOC.read_text())
    for name, command in main.commands.items():
        assert command.help, name
        assert f"entropy-elbo {name}" in doc, f"docs/cli.md has no section `entropy-elbo {name}`"


@pytest.mark.parametrize("name", sorted(main.commands))
def test_every_option_of_every_command_is_in_its_section_or_a_shared_table(name):
    doc = sections(CLI_DOC.read_text())
    shared = "".join(text for heading, text in doc.items() if heading.startswith(SHARED_SECTIONS))
    own = doc[f"entropy-elbo {name}"]
    missing = [o for o in long_names(main.commands[name]) if not mentions(own, o) and not mentions(shared, o)]
    assert not missing, f"docs/cli.md does not document {missing} of `entropy-elbo {name}`"


def test_readme_gives_the_two_setup_commands_and_fits_in_five_minutes():
    text = README.read_text()
    assert "make demo" in text and "make test" in text  # .ci/run calls `make test`, as README tells a newcomer
    assert len(text.splitlines()) < 150


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_at_a_file_and_heading_that_exist(page):
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: link {target!r} names no file"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file.read_text()), f"{page.name}: link {target!r} names no heading"


def test_readme_python_example_names_only_attributes_an_estimate_has():
    code = "".join(re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M))
    used = set(re.findall(r"\best\.(\w+)", code))
    assert used, "README's Python example no longer reads an estimate"
    known = {f.name for f in dataclasses.fields(Estimate)} | {n for n in dir(Estimate) if not n.startswith("_")}
    assert used <= known, f"README reads est.{sorted(used - known)}, which Estimate does not have"
