"""The docs agree with the program: docs/cli.md documents exactly the commands `erbench --help` lists, each with its
help text and every option, and every relative link of README.md, ARCHITECTURE.md and docs/ leads somewhere."""

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from erbench.cli import app

REPO = Path(__file__).resolve().parents[1]
CLI_PAGE = REPO / "docs" / "cli.md"
PAGES = [REPO / "README.md", REPO / "ARCHITECTURE.md", *sorted((REPO / "docs").glob("*.md"))]


def listed_commands() -> list[str]:
    """The command names of the Commands panel that `erbench --help` prints."""
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).stdout
    panel = out.split("Commands", 1)[1].split("╰", 1)[0]
    return re.findall(r"^│ (\S+)\s{2,}", panel, flags=re.M)


def sections(page: Path) -> dict[str, str]:
    """`## erbench NAME` sections of the page by command name."""
    parts = re.split(r"^## erbench (\S+)\n", page.read_text(), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


COMMANDS = typer.main.get_command(app).commands


def test_the_cli_page_documents_the_commands_help_lists():
    listed = listed_commands()
    assert listed == list(COMMANDS)  # the parse of --help found every command, in order
    assert list(sections(CLI_PAGE)) == listed


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_section_quotes_its_help_and_names_every_option(name):
    command, section = COMMANDS[name], sections(CLI_PAGE)[name]
    assert f"> {' '.join(command.help.split())}\n" in section, f"docs/cli.md: quote `erbench {name} --help`'s text"
    options = [max(p.opts, key=len) for p in command.params if p.param_type_name == "option"]
    missing = [o for o in options if not re.search(rf"{re.escape(o)}(?![\w-])", section)]
    assert not missing, f"docs/cli.md, erbench {name}: options missing: {missing}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)  # headings, not comments in code
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_lead_to_files_and_headings_that_exist(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
            broken.append(target)
    assert not broken, f"{page.relative_to(REPO)}: broken links {broken}"
