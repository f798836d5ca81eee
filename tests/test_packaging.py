"""The Docker image mirrors CI: the same packages installed, the same commands run (no Docker engine here)."""

import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def installs(text: str) -> list[list[str]]:
    """Each `pip install` of a script, as its arguments less quiet flags and the index URL (the image's torch comes
    from the CPU index, CI's from the machine's registry)."""
    found = []
    for line in re.findall(r"pip install ([^\n&\\]+)", text):
        args = shlex.split(line)
        args = [a for i, a in enumerate(args) if a not in ("-q", "--index-url") and (i == 0 or args[i - 1] != "--index-url")]
        found.append(args)
    return found


def commands(text: str) -> list[str]:
    """The test, report and check commands, with their environment prefixes."""
    return re.findall(r"(?:ERBENCH_QUIET=1 )?(?:python -m pytest -q|erbench report --verify|erbench check)", text)


def test_the_dockerfile_installs_and_runs_what_ci_does():
    ci, docker = (REPO / ".ci" / "run").read_text(), (REPO / "Dockerfile").read_text()
    ci_installs = [args for args in installs(ci) if args != ["--upgrade", "pip"]]
    docker_installs = [args for args in installs(docker) if args != ["--upgrade", "pip"]]
    flatten = lambda groups: sorted(arg for group in groups for arg in group)  # noqa: E731
    assert flatten(docker_installs) == flatten(ci_installs) and "torch==2.13.0" in flatten(ci_installs)
    assert commands(docker) == commands(ci) == ["python -m pytest -q", "erbench report --verify", "ERBENCH_QUIET=1 erbench check"]


def test_the_readme_test_command_installs_what_ci_does():
    readme = (REPO / "README.md").read_text().split("```", 2)[1]  # the two opening commands
    test_line = [line for line in readme.splitlines() if "pytest" in line][0]
    ci = (REPO / ".ci" / "run").read_text()
    assert sorted(a for g in installs(test_line) for a in g) == sorted(a for g in installs(ci) if g != ["--upgrade", "pip"] for a in g)
