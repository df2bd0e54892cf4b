"""Runbooks that run: every command, secret name and deployment the docs name is checked.

README.md and docs/*.md are read as an operator reads them. No server, no subprocess:

- `data-pipelines ...` commands are parsed by the CLI's own argparse parser
  (`data_pipelines_cli.main.build_parser`), `prefect ...` commands by Prefect's own CLI app
  (`prefect.cli._app`: its meta app for the global flags, then the command's own parameters;
  nothing is executed), `dlt ...` commands by dlt's own CLI parser; `make TARGET` names a
  target of the Makefile. Commands are taken from fenced code blocks (one per line, `\\`
  continuations joined, `# comments` dropped, after `VAR=value`, `.venv/bin/` or `uv run ...`)
  and from inline code spans.
- Conventions for what a doc may write in place of a value:
  `<name>`-style placeholders from `PLACEHOLDERS` (an unknown one fails), `YYYY-MM-DD`, an
  optional group `[--option VALUE]` (checked with and without it), and `...` for "the rest
  left out" (then, and only then, missing required arguments are accepted). An inline span of
  a verb alone (`data-pipelines run`) names the verb: it must exist.
- Deployments named `FLOW/production` must be in prefect.yaml; `--param` names must be
  parameters of the deployment's flow; `dlt pipeline NAME`, `dlt-pipeline:NAME` and
  `dlt-pipeline-holder-NAME` must name a pipeline of `pipelines.registry.PIPELINES`.
- Secret names: Secrets Manager ids (`dlt/...`) must be ids dlt's own AWS provider reads for a
  secret the code reads (recorded from the provider itself); config keys (`[sources.x] key`)
  and environment variables (`SOURCES__X__KEY`) in the sections that hold secrets must be read
  by the code; the secrets table of docs/production.md section 1 lists exactly the secrets the
  code reads; each secrets-table row pairs an id with what the provider reads there.
- No doc states how many deployments, automations, pipelines or flows there are (prefect.yaml,
  the registry and the alert definitions are the count), and no doc cites issue numbers.
- The README's backfill example requests days the demo has not loaded, that the local OXR
  sandbox serves.

Everything compared against is derived at test time from prefect.yaml, the registry, the CLI
parsers and the code, never from a list kept here.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import io
import pkgutil
import re
import shlex
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from infra.prefect_setup import PROJECT_DIR, deployments, load_entrypoint, load_prefect_file

DOCS: tuple[Path, ...] = (PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md")))
DOC_IDS = [str(path.relative_to(PROJECT_DIR)) for path in DOCS]
TOOLS = ("data-pipelines", "prefect", "dlt", "make")


@cache
def pipeline_names() -> tuple[str, ...]:
    """The dlt pipeline names of the registry (a mapping by name, or the specs themselves)."""
    from pipelines.registry import PIPELINES

    names = PIPELINES.keys() if isinstance(PIPELINES, dict) else (p.name for p in PIPELINES)
    return tuple(sorted(names))


# Placeholders a doc may write for a value, and what the check substitutes.
PLACEHOLDERS: dict[str, Callable[[], str]] = {
    "name": lambda: pipeline_names()[0],
    "pipeline": lambda: pipeline_names()[0],
    "id": lambda: str(uuid.UUID(int=1)),
    "run-id": lambda: str(uuid.UUID(int=1)),
    "SQL": lambda: "select 1",
    "seconds": lambda: "60",
    "bucket": lambda: "acme-raw",
    "YYYY-MM-DD": lambda: "2026-01-12",
}
ANGLE = re.compile(r"<([^<>\s]+)>")
ELLIPSIS = "..."


# ---- reading the docs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str  # as written, whitespace collapsed
    tool: str
    argv: tuple[str, ...]  # after the tool, placeholders not yet substituted
    inline: bool

    def where(self) -> str:
        return f"{self.doc}:{self.line}: `{self.text}`"


@cache
def doc_text(doc: str) -> str:
    return (PROJECT_DIR / doc).read_text()


@cache
def split_doc(doc: str) -> tuple[str, tuple[tuple[int, str], ...]]:
    """(prose with code blocks blanked, keeping line numbers; code block lines with numbers)."""
    prose, code = [], []
    fenced = False
    for number, line in enumerate(doc_text(doc).splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            prose.append("")
            continue
        if fenced:
            code.append((number, line))
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), tuple(code)


def code_lines(doc: str) -> Iterator[tuple[int, str]]:
    """Logical lines of the doc's code blocks: `\\` continuations joined."""
    pending: list[str] = []
    start = 0
    for number, line in split_doc(doc)[1]:
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending.append(line.rstrip()[:-1])
            continue
        pending.append(line)
        yield start, " ".join(part.strip() for part in pending)
        pending = []
    if pending:
        yield start, " ".join(part.strip() for part in pending)


SPAN = re.compile(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`")


def inline_spans(doc: str) -> Iterator[tuple[int, str]]:
    prose = split_doc(doc)[0]
    for match in SPAN.finditer(prose):
        yield prose.count("\n", 0, match.start()) + 1, " ".join(match.group(1).split())


def line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


SEPARATORS = {"&&", "||", ";", "|"}


def _invocations(tokens: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(tool, argv) of each command of a shell line that runs one of TOOLS."""
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token not in SEPARATORS:
            segment.append(token)
            continue
        rest = segment
        segment = []
        while rest and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", rest[0]):
            rest = rest[1:]  # VAR=value before the command
        if rest[:2] == ["uv", "run"]:
            rest = rest[2:]
            while rest and rest[0].startswith("-"):
                rest = rest[1:]
        if not rest:
            continue
        tool = rest[0].rsplit("/", 1)[-1]
        if tool in TOOLS and (rest[0] == tool or rest[0].endswith("bin/" + tool)):
            yield tool, rest[1:]


def commands(doc: str) -> list[Command]:
    found = []
    sources = [(n, text, False) for n, text in code_lines(doc)]
    sources += [(n, text, True) for n, text in inline_spans(doc)]
    for number, text, inline in sources:
        try:
            tokens = shlex.split(text, comments=not inline)
        except ValueError:
            continue  # not a shell line (prose in a span)
        for tool, argv in _invocations(tokens):
            if argv:  # the tool's name alone is a mention, not a command
                found.append(Command(doc, number, text, tool, tuple(argv), inline))
    return found


def all_commands(tool: str) -> list[Command]:
    return [c for doc in DOC_IDS for c in commands(doc) if c.tool == tool]


# ---- placeholders -----------------------------------------------------------------------


class UnknownPlaceholder(Exception):
    pass


def _substitute(token: str) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in PLACEHOLDERS:
            raise UnknownPlaceholder(
                f"unknown placeholder <{key}> (known: {', '.join(sorted(PLACEHOLDERS))})"
            )
        return PLACEHOLDERS[key]()

    return ANGLE.sub(one, token).replace("YYYY-MM-DD", PLACEHOLDERS["YYYY-MM-DD"]())


OPTIONAL_GROUP = re.compile(r"\[(-[^\[\]]*)\]")


def variants(command: Command) -> Iterator[tuple[list[str], bool]]:
    """(argv with placeholders substituted, elided) for each form the command stands for:
    as written, or with its optional groups `[--option VALUE]` taken and left out."""
    forms = [list(command.argv)]
    text = " ".join(command.argv)
    if OPTIONAL_GROUP.search(text):  # tokens of a command with options in brackets are plain
        forms = [OPTIONAL_GROUP.sub(r"\1", text).split(), OPTIONAL_GROUP.sub("", text).split()]
    for tokens in forms:
        elided = ELLIPSIS in tokens
        yield [_substitute(t) for t in tokens if t != ELLIPSIS], elided


def is_verb_reference(command: Command) -> bool:
    """An inline span of a verb alone (`data-pipelines run`): names the verb, not a run."""
    return command.inline and len(command.argv) == 1 and not command.argv[0].startswith("-")


# ---- the three CLIs -----------------------------------------------------------------------


def check_data_pipelines(argv: list[str], lenient: bool) -> str | None:
    from data_pipelines_cli.main import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exit_:
            if exit_.code == 0:  # --help, --version
                return None
            message = err.getvalue().strip().splitlines()[-1]
            if lenient and "the following arguments are required" in message:
                return None
            return message
    return None


@cache
def flow_parameters() -> dict[str, set[str]]:
    """`FLOW/DEPLOYMENT` -> the names its flow function takes (read from the entrypoint)."""
    found = {}
    raw = load_prefect_file()["deployments"]
    for spec, deployment in zip(deployments(), raw, strict=True):
        # the flow as the worker loads it (flows of application tables are generated)
        flow = load_entrypoint(deployment["entrypoint"])
        names = set(inspect.signature(flow.fn).parameters)
        found[spec.full_name] = names | set(spec.parameters)
    return found


def check_prefect(argv: list[str], lenient: bool) -> str | None:
    import cyclopts
    from prefect.cli import _app as prefect_app

    try:
        # the root: session flags (--profile, --no-prompt), then the command and its options
        _, bound, _ = prefect_app._app.meta.parse_args(
            prefect_app._normalize_top_level_flags(argv), print_error=False, exit_on_error=False
        )
        rest = prefect_app._normalize_command_names(tuple(bound.arguments.get("tokens", ())))
        command, bound, _ = prefect_app._app.parse_args(
            rest, print_error=False, exit_on_error=False
        )
    except cyclopts.MissingArgumentError as error:
        return None if lenient else str(error)
    except cyclopts.CycloptsError as error:
        return str(error).strip().splitlines()[0]
    arguments = dict(bound.arguments)
    if f"{command.__module__}.{command.__name__}" == "prefect.cli.deployment.run":
        name = arguments.get("name")
        known = flow_parameters()
        if name is None:
            return None if lenient else "no deployment named"
        if name not in known:
            return f"no deployment {name!r} in prefect.yaml (it has {', '.join(known)})"
        for param in arguments.get("params") or ():
            key = param.split("=", 1)[0]
            if key not in known[name]:
                return f"{name} has no parameter {key!r} (it takes {sorted(known[name])})"
    return None


@cache
def dlt_parsers() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    from dlt._workspace.cli._dlt import _create_parser

    parser, pre_parser, _ = _create_parser("dlt")
    return parser, pre_parser


def check_dlt(argv: list[str], lenient: bool) -> str | None:
    parser, pre_parser = dlt_parsers()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            namespace, remaining = pre_parser.parse_known_args(argv)
            args = parser.parse_args(remaining, namespace=namespace)
        except SystemExit as exit_:
            if exit_.code == 0:
                return None
            message = err.getvalue().strip().splitlines()[-1]
            if lenient and "the following arguments are required" in message:
                return None
            return message
    name = getattr(args, "pipeline_name", None)
    if args.command == "pipeline" and name is not None and name not in pipeline_names():
        return f"no pipeline {name!r} in pipelines.registry.PIPELINES {pipeline_names()}"
    return None


@cache
def make_targets() -> frozenset[str]:
    text = (PROJECT_DIR / "Makefile").read_text()
    return frozenset(re.findall(r"^([A-Za-z][\w.-]*):", text, re.MULTILINE))


def check_make(argv: list[str], lenient: bool) -> str | None:
    targets = [a for a in argv if not a.startswith("-") and "=" not in a]
    unknown = [t for t in targets if t not in make_targets()]
    return f"no Makefile target {unknown} (it has {sorted(make_targets())})" if unknown else None


CHECKS: dict[str, Callable[[list[str], bool], str | None]] = {
    "data-pipelines": check_data_pipelines,
    "prefect": check_prefect,
    "dlt": check_dlt,
    "make": check_make,
}


def command_failures(doc: str, tool: str) -> list[str]:
    failures = []
    for command in commands(doc):
        if command.tool != tool:
            continue
        try:
            for argv, elided in variants(command):
                problem = CHECKS[tool](argv, elided or is_verb_reference(command))
                if problem:
                    failures.append(f"{command.where()}: {problem}")
                    break
        except UnknownPlaceholder as error:
            failures.append(f"{command.where()}: {error}")
    return failures


def test_the_docs_hold_commands_of_each_tool() -> None:
    """The extraction finds what is there (the tests below cannot pass on nothing)."""
    for tool in TOOLS:
        assert len(all_commands(tool)) >= 3, f"no `{tool} ...` commands found in the docs"
    texts = {c.text for c in all_commands("prefect")}
    assert "prefect deploy --all" in texts


@pytest.mark.parametrize("tool", TOOLS)
@pytest.mark.parametrize("doc", DOC_IDS)
def test_commands_parse_with_the_tools_own_cli(doc: str, tool: str) -> None:
    failures = command_failures(doc, tool)
    assert not failures, f"commands the {tool} CLI refuses:\n" + "\n".join(failures)


def test_the_checks_refuse_what_the_clis_refuse() -> None:
    """Each check fails on a command its CLI rejects (the tests above can fail)."""
    assert check_data_pipelines(["run", "products-daily"], False)
    assert check_data_pipelines(["run"], False)
    assert check_data_pipelines(["run"], True) is None
    assert check_prefect(["worker", "ls"], False)
    assert check_prefect(["deploy", "--all", "--prefect-file"], False)
    assert check_prefect(["deployment", "run", "products/production"], False)
    assert check_prefect(["flow-run", "logs", "<run-id>"], False)  # not substituted: no UUID
    assert check_dlt(["pipeline", "no_such_pipeline", "info"], False)
    assert check_dlt(["pipeline", pipeline_names()[0], "infoo"], False)
    assert check_make(["no-such-target"], False)


# ---- names: deployments, pipelines ---------------------------------------------------------

DEPLOYMENT_MENTION = re.compile(r"(?<![\w./-])([A-Za-z][\w-]*)/production(?![\w/-]|\.\w)")
PIPELINE_MENTION = re.compile(r"dlt-pipeline(?::|-holder-)([\w<>]+)")


@pytest.mark.parametrize("doc", DOC_IDS)
def test_deployments_and_pipelines_named_exist(doc: str) -> None:
    text = doc_text(doc)
    flows = {name.split("/")[0] for name in flow_parameters()}
    failures = []
    for match in DEPLOYMENT_MENTION.finditer(text):
        flow = match.group(1)
        if flow not in flows and flow != "FLOW":  # FLOW: the placeholder for any flow
            failures.append(f"{doc}:{line_of(text, match.start())}: no deployment {match[0]!r}")
    for match in PIPELINE_MENTION.finditer(text):
        name = match.group(1)
        if name not in pipeline_names() and not ANGLE.fullmatch(name):
            failures.append(f"{doc}:{line_of(text, match.start())}: no dlt pipeline {name!r}")
    assert not failures, "\n".join(failures)


# ---- secret names -------------------------------------------------------------------------


def code_secrets() -> dict[str, Any]:
    """Every secret the code reads (found in the code: tests/test_secrets_example.py) -> hint.

    Keys are dotted (`sources.products.credentials`); a credentials spec's section maps to
    its spec class.
    """
    from dlt.common.typing import TSecretValue

    from tests.test_secrets_example import (
        CREDENTIAL_SPECS,
        LITERAL_SECRET,
        _code_files,
        _source_secrets,
    )

    found: dict[str, Any] = {}
    for path in _code_files():
        for key in LITERAL_SECRET.findall(path.read_text()):
            found[key] = TSecretValue
    for key in _source_secrets():
        found[key] = TSecretValue
    for section, (spec, _, _) in CREDENTIAL_SPECS.items():
        found[section] = spec
    return found


@cache
def secret_ids() -> dict[str, frozenset[str]]:
    """Secret key -> the Secrets Manager ids dlt's own AWS provider reads to resolve it.

    Recorded from the provider itself, configured as production configures it (dlt's
    defaults: prefix `dlt/`, TOML fragments only), with the vault replaced by a recorder.
    """
    from dlt.common.configuration.providers.aws_secrets import AwsSecretsManagerProvider
    from dlt.common.configuration.specs import AwsCredentials
    from dlt.common.configuration.specs.config_providers_context import (
        ConfigProvidersConfiguration,
    )

    class Recorder(AwsSecretsManagerProvider):
        def __init__(self) -> None:
            settings = dict(ConfigProvidersConfiguration().aws_secrets)
            super().__init__(AwsCredentials(), **settings)
            self.asked: set[str] = set()

        def _look_vault(self, full_key: str, hint: type) -> str | None:
            self.asked.add(self.secret_name_prefix + full_key)
            return None

    found = {}
    for dotted, hint in code_secrets().items():
        *sections, key = dotted.split(".")
        recorder = Recorder()
        recorder.get_value(key, hint, None, *sections)
        found[dotted] = frozenset(recorder.asked)
    return found


def known_secret_ids() -> set[str]:
    return set().union(*secret_ids().values())


SECRET_ID = re.compile(r"(?<![\w./:<>-])dlt/[A-Za-z0-9_][\w/-]*")


@pytest.mark.parametrize("doc", DOC_IDS)
def test_secrets_manager_ids_are_ones_dlt_reads(doc: str) -> None:
    text = doc_text(doc)
    known = known_secret_ids()
    assert "dlt/dlt_secrets_toml" in known  # the recorder sees what the provider asks for
    failures = [
        f"{doc}:{line_of(text, m.start())}: `{m[0]}` is no secret dlt's provider reads "
        f"(it reads {', '.join(sorted(known))})"
        for m in SECRET_ID.finditer(text)
        if m[0].rstrip("/") not in known
    ]
    assert not failures, "\n".join(failures)


# Sections whose keys hold secrets: config keys and variables under these are checked.
SECRET_ROOTS = ("sources", "destination", "alerting", "snowflake_admin")


@cache
def known_config() -> tuple[frozenset[str], frozenset[str]]:
    """(keys the code reads, sections whose every key the code may read), both dotted.

    Secrets (with each credentials spec's fields), `dlt.config.get("...")` keys in the code,
    `dlt.config.get(f"section.{...}")` sections, and the settings of .dlt/config.toml.
    """
    from tests.test_secrets_example import _code_files

    keys: set[str] = set()
    for dotted, hint in code_secrets().items():
        keys.add(dotted)
        if isinstance(hint, type) and hasattr(hint, "get_resolvable_fields"):
            keys.update(f"{dotted}.{field}" for field in hint.get_resolvable_fields())
    wildcards: set[str] = set()
    for path in _code_files():
        code = path.read_text()
        keys.update(re.findall(r"dlt\.config\.get\(\s*[\"']([\w.]+)[\"']", code))
        wildcards.update(re.findall(r"dlt\.config\.get\(\s*f[\"']([\w.]+)\.\{", code))
        keys.update(_config_spec_keys(path, code))
    keys.update(_source_arguments())

    def flatten(tree: dict[str, Any], prefix: str) -> Iterator[str]:
        for key, value in tree.items():
            yield prefix + key
            if isinstance(value, dict):
                yield from flatten(value, f"{prefix}{key}.")

    config = tomllib.loads((PROJECT_DIR / ".dlt" / "config.toml").read_text())
    keys.update(flatten(config, ""))
    return frozenset(keys), frozenset(wildcards)


CONFIG_SPEC = re.compile(r"resolve_configuration\(\s*(\w+)\(\)\s*,\s*sections=\(([^)]*)\)")


def _config_spec_keys(path: Path, code: str) -> Iterator[str]:
    """`section.field` of each dlt config spec the code resolves under literal sections."""
    for spec_name, sections in CONFIG_SPEC.findall(code):
        module = ".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts)
        module = module.removesuffix(".__init__")
        spec = getattr(importlib.import_module(module), spec_name, None)
        if spec is None:
            continue  # imported inside a function: a credentials spec of CREDENTIAL_SPECS
        section = ".".join(re.findall(r"[\"'](\w+)[\"']", sections))
        yield section
        yield from (f"{section}.{field}" for field in spec.get_resolvable_fields())


def _source_arguments() -> Iterator[str]:
    """`sources.<section>.<argument>` of every dlt source: dlt injects each from config."""
    for info in pkgutil.walk_packages([str(PROJECT_DIR / "sources")], "sources."):
        for value in vars(importlib.import_module(info.name)).values():
            if type(value).__name__ == "DltSourceFactoryWrapper":
                for name in inspect.signature(value).parameters:
                    yield f"sources.{value.section}.{name}"


def config_key_problem(dotted: str) -> str | None:
    keys, wildcards = known_config()
    if dotted in keys or any(dotted.startswith(w + ".") for w in wildcards):
        return None
    if any(k.startswith(dotted + ".") for k in keys) or dotted in wildcards:
        return None  # a section the code reads
    return "not read by the code"


_ROOTS = "|".join(SECRET_ROOTS)
CONFIG_KEY = re.compile(rf"\[({_ROOTS})((?:\.\w+)*)\](?:\s+(\w+))?")
CONFIG_VAR = re.compile(rf"\b({_ROOTS.upper()})__([A-Z0-9_]*[A-Z0-9])\b")


@pytest.mark.parametrize("doc", DOC_IDS)
def test_config_keys_and_variables_of_secrets_are_read_by_the_code(doc: str) -> None:
    text = doc_text(doc)
    failures = []
    for number, span in [*inline_spans(doc), *code_lines(doc)]:
        for match in CONFIG_KEY.finditer(span):
            section = match.group(1) + match.group(2)
            dotted = f"{section}.{match.group(3)}" if match.group(3) else section
            problem = config_key_problem(dotted)
            if problem and match.group(3):  # a word after the section may be prose
                problem = config_key_problem(section)
                dotted = section
            if problem:
                failures.append(f"{doc}:{number}: [{section}] ({dotted}) is {problem}")
    for match in CONFIG_VAR.finditer(text):
        dotted = ".".join(
            part.lower() for part in (match.group(1), *match.group(2).split("__")) if part
        )
        problem = config_key_problem(dotted)
        if problem:
            failures.append(f"{doc}:{line_of(text, match.start())}: {match[0]} is {problem}")
    assert not failures, "\n".join(failures)


def _section_key(cell: str) -> Iterator[str]:
    """`[section] a`, `b` -> section.a, section.b; `[section.credentials]` -> that section."""
    for match in re.finditer(r"\[([\w.]+)\]((?:[`\s,]+(?:and\s+)?\w+)*)", cell):
        section, rest = match.group(1), re.findall(r"\b\w+\b", match.group(2))
        rest = [word for word in rest if word != "and"]
        if rest:
            yield from (f"{section}.{word}" for word in rest)
        else:
            yield section


def markdown_tables(doc: str) -> Iterator[tuple[int, list[str], list[tuple[int, list[str]]]]]:
    """(line, header cells, [(line, cells)]) of each table of the doc."""
    lines = [line.strip() for line in doc_text(doc).splitlines()]
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|--"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("|"):
                rows.append((j + 1, [c.strip() for c in lines[j].strip("|").split("|")]))
                j += 1
            yield i + 1, header, rows
            i = j
        else:
            i += 1


def _strip_details(cell: str) -> str:
    """A cell without its parenthesised asides (`(host, username, ...)`)."""
    return re.sub(r"\([^()]*\)", "", cell)


def test_production_settings_table_lists_exactly_the_secrets_the_code_reads() -> None:
    doc = "docs/production.md"
    _, section_one = doc_text(doc).split("## 1.", 1)
    section_one = section_one.split("\n## ", 1)[0]
    table = next(t for t in markdown_tables(doc) if "kind" in t[1] and "dlt key" in t[1][1])
    assert f"| {table[1][0]} |" in section_one, "the table is no longer in section 1"
    kind, key = table[1].index("kind"), table[1].index("dlt key (environment form)")
    listed = {
        k for _, cells in table[2] if cells[kind] == "secret" for k in _section_key(cells[key])
    }
    read = set(code_secrets())
    assert read, "the scan of the code found no secrets"
    assert listed == read, (
        f"{doc} section 1 lists secrets the code does not read: {sorted(listed - read)}; "
        f"and lacks secrets the code reads: {sorted(read - listed)}"
    )


@pytest.mark.parametrize("doc", DOC_IDS)
def test_secrets_tables_pair_each_id_with_what_the_provider_reads_there(doc: str) -> None:
    """`| dlt/sources/products | [sources.products] credentials |`: the provider reads that
    id when it resolves that key; every secret the code reads is in the table."""
    ids = secret_ids()
    for line, header, rows in markdown_tables(doc):
        if header[:2] != ["secret", "holds"]:
            continue
        covered: set[str] = set()
        failures = []
        for number, cells in rows:
            secret_id = cells[0].strip("`")
            for key in _section_key(_strip_details(cells[1])):
                # a credentials section's fields resolve as the section; a section alone
                # stands for every secret under it
                owners = [
                    s for s in ids if key == s or key.startswith(s + ".") or s.startswith(key + ".")
                ]
                if not owners:
                    failures.append(f"{doc}:{number}: the code reads no secret {key}")
                for owner in owners:
                    if secret_id not in ids[owner]:
                        failures.append(
                            f"{doc}:{number}: dlt reads {owner} from {sorted(ids[owner])}, "
                            f"not from {secret_id}"
                        )
                covered.update(owners)
        missing = sorted(set(ids) - covered)
        if missing:
            failures.append(f"{doc}:{line}: the table lacks {missing}")
        assert not failures, "\n".join(failures)


# ---- counts and issue numbers ---------------------------------------------------------------

NUMBER_WORDS = "two|three|four|five|six|seven|eight|nine|ten|eleven|twelve"
COUNTED = re.compile(
    rf"\b({NUMBER_WORDS}|\d+)\s+(?:[A-Za-z][\w-]*\s+){{0,2}}"
    r"(deployments|automations|pipelines|flows|alerts)\b",
    re.IGNORECASE,
)


@pytest.mark.parametrize("doc", DOC_IDS)
def test_no_doc_counts_deployments_automations_or_pipelines(doc: str) -> None:
    """prefect.yaml, the registry and the alert definitions are the count: a number in prose
    goes stale the day one is added ("every deployment in prefect.yaml" does not)."""
    text = doc_text(doc)
    failures = [
        f"{doc}:{line_of(text, m.start())}: {' '.join(m[0].split())!r} "
        f"(prefect.yaml has {len(flow_parameters())} deployments, the registry "
        f"{len(pipeline_names())} pipelines: say 'every ...' instead of a number)"
        for m in COUNTED.finditer(text)
    ]
    assert not failures, "\n".join(failures)


ISSUE_REFERENCE = re.compile(
    r"\bissues?\s*#?\s*\d+|(?<![\w&/#])#\d+\b|\bthe\s+issue(?:'s)?\b", re.IGNORECASE
)


@pytest.mark.parametrize("doc", DOC_IDS)
def test_no_doc_cites_issues(doc: str) -> None:
    """Docs say what holds and why; the issue tracker is history."""
    text = doc_text(doc)
    failures = [
        f"{doc}:{line_of(text, m.start())}: {m[0]!r}" for m in ISSUE_REFERENCE.finditer(text)
    ]
    assert not failures, "\n".join(failures)


# ---- the README's backfill example ---------------------------------------------------------


def _readme_backfill_ranges() -> list[tuple[Command, dt.date, dt.date]]:
    found = []
    for command in commands("README.md"):
        argv = list(command.argv)
        if command.tool == "prefect" and argv[:2] == ["deployment", "run"]:
            if not argv[2].startswith("exchange-rates-backfill/"):
                continue
            params = dict(a.split("=", 1) for a in argv[3:] if "=" in a)
            start, end = params["start_date"], params["end_date"]
        elif command.tool == "data-pipelines" and argv[:1] == ["backfill"] and len(argv) == 3:
            start, end = argv[1], argv[2]
        else:
            continue
        found.append((command, dt.date.fromisoformat(start), dt.date.fromisoformat(end)))
    return found


def test_readme_backfill_requests_days_the_demo_has_not_loaded() -> None:
    from dev_stack.demo import DEMO_PARAMETERS
    from dev_stack.oxr_sandbox.data import load_series

    examples = _readme_backfill_ranges()
    assert examples, "the README shows no backfill"
    backfills = [p for name, p in DEMO_PARAMETERS.items() if "backfill" in name]
    demo = [
        (dt.date.fromisoformat(p["start_date"]), dt.date.fromisoformat(p["end_date"]))
        for p in backfills
    ]
    served = load_series().dates
    for command, start, end in examples:
        where = command.where()
        assert start <= end < dt.date.today(), f"{where}: not a past range"
        assert (end - start).days < 7, f"{where}: keep the example small (quota, time)"
        for demo_start, demo_end in demo:
            assert end < demo_start or start > demo_end, (
                f"{where}: the demo already loaded {demo_start}..{demo_end}; the example "
                "would request nothing"
            )
        assert served[0] <= start and end <= served[-1], (
            f"{where}: the local OXR sandbox serves {served[0]}..{served[-1]}"
        )


# ---- tables of deployments -------------------------------------------------------------------


@cache
def prefect_file_deployments() -> dict[str, tuple[str, str]]:
    """`FLOW/DEPLOYMENT` -> (entrypoint, cron or "—"), from prefect.yaml."""
    raw = load_prefect_file()["deployments"]
    found = {}
    for spec, deployment in zip(deployments(), raw, strict=True):
        crons = [s["cron"] for s in deployment.get("schedules") or () if "cron" in s]
        found[spec.full_name] = (deployment["entrypoint"], ", ".join(crons) or "—")
    return found


@pytest.mark.parametrize("doc", DOC_IDS)
def test_tables_of_deployments_match_prefect_yaml(doc: str) -> None:
    """A table listing deployments lists every one of prefect.yaml, as it is defined there."""
    expected = prefect_file_deployments()
    for line, header, rows in markdown_tables(doc):
        if "deployment" not in header or "entrypoint" not in header:
            continue
        name, entry = header.index("deployment"), header.index("entrypoint")
        schedule = next((i for i, h in enumerate(header) if h.startswith("schedule")), None)
        listed = {}
        for number, cells in rows:
            deployment = cells[name].strip("`")
            listed[deployment] = number
            if deployment not in expected:
                continue
            entrypoint, cron = expected[deployment]
            assert cells[entry].strip("`") == entrypoint, f"{doc}:{number}: entrypoint"
            if schedule is not None:
                assert cells[schedule].strip("`") == cron, f"{doc}:{number}: schedule {cron}"
        assert set(listed) == set(expected), (
            f"{doc}:{line}: the table lists {sorted(set(listed) - set(expected))} that "
            f"prefect.yaml does not define, and lacks {sorted(set(expected) - set(listed))}"
        )
