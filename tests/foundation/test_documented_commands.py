"""Every ``python -m bench ...`` / ``python -m stnn ...`` command named in the README or a message parses.

A hint that names a command the parser does not know (``bench fetch`` before it
was registered) sends a new user nowhere; this test reads the README and the
source of every package, substitutes sample values for placeholders, and parses
each command with the real parsers.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import bench.cli
import stnn.cli

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "datasets", "methods", "stnn")
PARSERS = {"bench": bench.cli.build_parser, "stnn": stnn.cli.build_parser}
COMMAND = re.compile(r"python -m (bench|stnn)(?![.\w])")
# Where a command written in prose or code ends (when it is not quoted in backticks).
END = re.compile(r"[\n\"'`)#;]|, |(?<!\.)\. ")
#: Placeholder words (NAME, PATH, RUN, HZ ...), f-string fields and bracketed options are replaced
#: by values any option accepts: "1" is a valid name, path, integer and float.
SAMPLE = "1"


def _sources() -> list[tuple[str, str]]:
    files = [REPO / "README.md"] + [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".md":
            text = re.sub(r"\\\n\s*", " ", text)  # shell line continuations
        else:
            text = re.sub(r"\"\s*\n?\s*f?\"", "", text)  # implicitly concatenated string literals
        out.append((str(path.relative_to(REPO)), text))
    return out


def _field(match: re.Match) -> str:
    inner = match.group(1)
    # "{train, segment, tune}" names alternatives: take the first; an f-string field is a value.
    return inner.split(",")[0].strip() if "," in inner else SAMPLE


def _tokens(fragment: str) -> list[str]:
    fragment = fragment.replace("[", " ").replace("]", " ").replace("...", " ")
    tokens = []
    for tok in shlex.split(fragment):
        tok = tok.split("|")[0]  # "train|test": one of the choices
        if re.fullmatch(r"[A-Z][A-Z0-9_]*(x[A-Z]+)?(=[A-Z]+)?", tok):
            tok = SAMPLE
        tokens.append(tok)
    return tokens


def _documented() -> list[tuple[str, str, list[str]]]:
    found = []
    for where, text in _sources():
        for m in COMMAND.finditer(text):
            # Fields first: "{entry['id']}" holds quotes that would end the command early.
            rest = re.sub(r"\{([^{}\n]*)\}", _field, text[m.end() : m.end() + 400])
            quoted = m.start() > 0 and text[m.start() - 1] == "`"
            end = rest.find("`") if quoted else (END.search(rest).start() if END.search(rest) else len(rest))
            line = text.count("\n", 0, m.start()) + 1
            found.append((m.group(1), f"{where}:{line}", _tokens(rest[:end])))
    return found


DOCUMENTED = _documented()


def test_the_commands_are_found():
    commands = {(prog, " ".join(t[:1])) for prog, _, t in DOCUMENTED}
    assert ("bench", "fetch") in commands and ("bench", "run") in commands and ("stnn", "train") in commands
    assert len(DOCUMENTED) > 20


@pytest.mark.parametrize("prog, where, tokens", DOCUMENTED, ids=[f"{w}:{' '.join(t)}" for _, w, t in DOCUMENTED])
def test_documented_command_parses(prog, where, tokens, capsys):
    parser = PARSERS[prog]()
    try:
        parser.parse_args(tokens)
        return
    except SystemExit as exc:
        if exc.code == 0:
            return
        err = capsys.readouterr().err
    # A command named without its arguments in prose ("`python -m bench report` writes ...") must
    # still name a real subcommand: the subcommand path alone answers --help.
    if any(t.startswith("-") for t in tokens) or "invalid choice" in err:
        pytest.fail(f"{where}: `python -m {prog} {' '.join(tokens)}` does not parse: {err.strip()}")
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*tokens, "--help"])
    assert exc.value.code == 0, f"{where}: `python -m {prog} {' '.join(tokens)}` names no subcommand"
