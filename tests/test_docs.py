"""The documentation is complete and its links lead somewhere.

``docs/reference.md`` must hold every ``carbon-jupyter`` command and option, every
``%carbon`` / ``%%carbon`` form and option, every configurable traitlet and every
``CARBON_JUPYTER_*`` variable the package reads, each on its own row with its
choices and its default. The lists are taken from the code itself (the real
argparse parsers, the traitlets, a search of the package's source), so an option
added without a line in the reference fails here, naming the command and the option.
Every relative link in README.md and docs/ must point to a file (and heading) that exists.
"""

from __future__ import annotations

import argparse
import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"
PACKAGE = ROOT / "carbon_jupyter"

# -- reading the reference ---------------------------------------------------------------


def _strip_code_blocks(text: str) -> str:
    """``text`` with fenced code blocks blanked (their lines kept, so line numbers hold)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            out.append("")
        else:
            out.append("" if fenced else line)
    return "\n".join(out)


def sections(text: str) -> dict[str, str]:
    """Each heading's first code span (``carbon-jupyter serve``) -> its text, to the next one."""
    found: dict[str, str] = {}
    key: str | None = None
    lines: list[str] = []
    for line in _strip_code_blocks(text).splitlines():
        if line.startswith("#"):
            if key is not None:
                found[key] = "\n".join(lines)
            code = re.search(r"`([^`]+)`", line)
            key, lines = (code.group(1) if code else None), []
        elif key is not None:
            lines.append(line)
    if key is not None:
        found[key] = "\n".join(lines)
    return found


def _mentions(line: str, word: str) -> bool:
    """Whether ``word`` (an option, a choice, a name) stands on its own in ``line``."""
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", line) is not None


# -- what the code offers --------------------------------------------------------------


def _command_parsers(
    parser: argparse.ArgumentParser, path: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """(``carbon-jupyter serve token create``, its parser) for the parser and every subcommand."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_parsers(sub, f"{path} {name}")


def _documented_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        yield action


def _name(action: argparse.Action) -> str:
    """How the reference writes an option: its first option string, or a positional's NAME."""
    if action.option_strings:
        return action.option_strings[0]
    if action.choices:
        return "|".join(str(c) for c in action.choices)
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return metavar or action.dest.upper()


def _default_texts(default: object) -> list[str]:
    """How a default may be written: 5.0 as 5 or 5.0; nothing for None, False or []."""
    if default is None or default is False or default == [] or default == argparse.SUPPRESS:
        return []
    if isinstance(default, float):
        return [f"{default:g}", repr(default)]
    return [str(default)]


def _missing(
    where: str, section: str | None, parser: argparse.ArgumentParser, also: str = ""
) -> list[str]:
    """What the reference lacks for one command: its section, options, choices, defaults."""
    if section is None:
        return [f"{where}: no section `{where}` in docs/reference.md"]
    text = f"{section}\n{also}"
    problems = []
    for action in _documented_actions(parser):
        name = _name(action)
        if action.option_strings:
            words = list(action.option_strings)
        elif action.choices:
            words = []
        else:
            words = [name]
        rows = [row for row in text.splitlines() if row.startswith("|")]
        rows = [r for r in rows if all(_mentions(r, w) for w in words)] if words else rows
        if action.choices:
            rows = [r for r in rows if all(_mentions(r, str(c)) for c in action.choices)]
        if not rows:
            choices = f" (choices {'|'.join(map(str, action.choices))})" if action.choices else ""
            problems.append(f"{where} {name}{choices}: no row in its section of docs/reference.md")
            continue
        defaults = _default_texts(action.default)
        if defaults and not any(_mentions(r, d) for r in rows for d in defaults):
            problems.append(
                f"{where} {name}: its default {action.default!r} is not in its row of "
                "docs/reference.md"
            )
    return problems


def _same_as(section: str | None, sections_: dict[str, str]) -> str:
    """The section a magic takes its options from, named as "the options of `X`" in its own."""
    if section is None:
        return ""
    named = re.search(r"options of\s+`([^`]+)`", section)
    return sections_.get(named.group(1), "") if named else ""


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    return sections(REFERENCE.read_text(encoding="utf-8"))


def test_every_cli_command_and_option_is_in_the_reference(reference: dict[str, str]) -> None:
    from carbon_jupyter.cli.main import build_parser

    problems = [
        problem
        for path, parser in _command_parsers(build_parser(), "carbon-jupyter")
        for problem in _missing(path, reference.get(path), parser)
    ]
    assert not problems, "undocumented:\n" + "\n".join(problems)


def test_every_magic_and_option_is_in_the_reference(reference: dict[str, str]) -> None:
    from carbon_jupyter.notebook import options

    commands = [
        *_command_parsers(options.cell_parser(), "%%carbon"),
        *_command_parsers(options.line_parser(), "%carbon"),
    ]
    problems = []
    for path, parser in commands:
        section = reference.get(path)
        problems += _missing(path, section, parser, also=_same_as(section, reference))
    assert not problems, "undocumented:\n" + "\n".join(problems)


def _server_extension_settings() -> Iterator[tuple[str, object, bool]]:
    """``CarbonJupyterApp``'s settings, read from its source.

    Importing Jupyter Server takes seconds, so the class body is parsed instead:
    every ``name = Trait(default, ...).tag(config=True)`` in it, each one checked
    to be found (as many as the class says ``config=True``).
    """
    source = (PACKAGE / "serverext" / "app.py").read_text(encoding="utf-8")
    cls = next(
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.ClassDef) and node.name == "CarbonJupyterApp"
    )
    found = []
    for node in cls.body:
        if not (isinstance(node, ast.Assign) and "config=True" in ast.unparse(node.value)):
            continue
        trait = node.value.func.value  # type: ignore[attr-defined]  # Trait(...) in .tag(...)
        default = ast.literal_eval(trait.args[0]) if trait.args else None
        found.append((f"CarbonJupyterApp.{node.targets[0].id}", default, False))  # type: ignore[attr-defined]
    assert len(found) == ast.get_source_segment(source, cls).count("config=True")  # type: ignore[union-attr]
    yield from found


def _configurables() -> Iterator[tuple[str, object, bool]]:
    """(``Class.setting``, its static default, whether that default is computed) per setting."""
    from carbon_jupyter.notebook.magics import CarbonMagics

    computed = CarbonMagics._trait_default_generators  # names with a @default method
    for name, trait in CarbonMagics.class_own_traits(config=True).items():
        yield f"CarbonMagics.{name}", trait.default_value, name in computed
    yield from _server_extension_settings()


def test_every_traitlet_is_in_the_reference() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    problems = []
    for name, default, computed in _configurables():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        if not rows:
            problems.append(f"{name}: no row in docs/reference.md")
        elif (
            not computed
            and isinstance(default, bool | int | float)
            and not any(_mentions(rows[0], d) for d in _default_texts(default) or [str(default)])
        ):
            problems.append(f"{name}: its default {default!r} is not in its row")
    assert not problems, "undocumented:\n" + "\n".join(problems)


ENV_NAME = re.compile(r"CARBON_JUPYTER_[A-Z0-9_]*[A-Z0-9]")


def variables_read_by_the_package() -> set[str]:
    """Every ``CARBON_JUPYTER_*`` name in the package's source (Python and the sidebar's)."""
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "labextension" / "src").glob("*.ts")]
    return {name for path in files for name in ENV_NAME.findall(path.read_text(encoding="utf-8"))}


def test_the_variable_search_finds_what_the_package_reads() -> None:
    found = variables_read_by_the_package()
    assert {"CARBON_JUPYTER_DB", "CARBON_JUPYTER_SERVER_DB", "CARBON_JUPYTER_LOCK_DIR"} <= found


def test_every_environment_variable_is_in_the_reference() -> None:
    rows = [
        line
        for line in REFERENCE.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `CARBON_JUPYTER_")
    ]
    documented = {re.match(r"\| `([A-Z0-9_]+)`", row).group(1) for row in rows}  # type: ignore[union-attr]
    missing = sorted(variables_read_by_the_package() - documented)
    assert not missing, (
        "read by the package but without a row in docs/reference.md's variables: "
        + ", ".join(missing)
    )
    unknown = sorted(documented - variables_read_by_the_package())
    assert not unknown, "documented but read nowhere in carbon_jupyter/: " + ", ".join(unknown)


def test_the_data_sources_are_credited() -> None:
    """Whoever redistributes the embedded figures must keep these lines (DATA-SOURCES.md)."""
    from carbon_jupyter.intensity import attributions

    page = (DOCS / "how-numbers-are-made.md").read_text(encoding="utf-8")
    missing = [line for line in attributions() if line not in page]
    assert not missing, (
        "attribution lines missing from docs/how-numbers-are-made.md:\n" + "\n".join(missing)
    )


def test_the_model_constants_in_the_docs_are_the_code_s() -> None:
    """The formulas' constants as documented are the ones the models use."""
    from carbon_jupyter.intensity import industry_pue, provider_pue, resolve
    from carbon_jupyter.sensors.cpu_model import LOAD_CURVE
    from carbon_jupyter.sensors.memory import default_ram_w_per_gb
    from carbon_jupyter.sensors.nvml_samples import POLL_PERIOD_S

    page = (DOCS / "how-numbers-are-made.md").read_text(encoding="utf-8")
    expected = {
        "RAM W/GB": f"{default_ram_w_per_gb():g} W/GB",
        "world average": f"{resolve().intensity_g_per_kwh:g} gCO2e/kWh",
        "industry PUE": f"{industry_pue().value:g}",
        "power polling period": f"{POLL_PERIOD_S:g} s",
        **{f"PUE {p}": f"{provider_pue(p).value:.2f}" for p in ("aws", "gcp", "azure")},
        **{
            f"load curve at {u:g}": f"| {u * 100:g} % | {fraction * 100:g} % |"
            for u, fraction in LOAD_CURVE
        },
    }
    wrong = [f"{what}: {text!r}" for what, text in expected.items() if text not in page]
    assert not wrong, "docs/how-numbers-are-made.md lacks the code's figures:\n" + "\n".join(wrong)


# -- links ---------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.glob("*.md"))]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _strip_code_blocks(path.read_text(encoding="utf-8")).splitlines():
        heading = re.match(r"#{1,6}\s+(.*)", line)
        if heading:
            slug = _slug(heading.group(1))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def _links(path: Path) -> Iterator[str]:
    text = _strip_code_blocks(path.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    yield from LINK.findall(text)
    yield from REFERENCE_LINK.findall(text)


def test_every_relative_link_leads_to_a_file_and_heading_that_exist() -> None:
    broken = []
    for page in _pages():
        if not page.exists():
            continue
        for target in _links(page):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_check_sees_broken_links(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Top\n[ok](#top) [gone](missing.md) `[code](nowhere.md)`\n")
    assert sorted(_links(page)) == ["#top", "missing.md"]
    assert _anchors(page) == {"top"}
