"""Every code block of README.md works as written: one test per block.

The rule, by the block's language tag (a block without a tag, or with any
other tag, fails):

- ```python: executed for real, in a temporary working directory. The run
  directory `runs/quick` in a snippet is replaced by the `tiny_run` fixture's
  run directory (16x16 frames, an untrained model), so snippets stay readable.
- ```sh: commands to paste. Each line (backslash continuations joined,
  `# comments` and leading `NAME=value` environment assignments dropped) must
  start one of:
    - `vidgen`, `vidgen-export`, `vidgen-serve`: parsed by that program's own
      `build_parser()` (parse_args only; nothing runs; SystemExit fails);
      `--preset NAME` must name a preset, and every `--set KEY=VALUE` must be
      accepted by `vidgen.config.apply_overrides` on that preset (`quick`
      without `--preset`): the key exists and the value is valid;
    - `make TARGET [VAR=value ...]`: TARGET is a target of the Makefile;
    - `python -m MODULE ...`: MODULE is importable.
  Any other command (pip, docker, curl, tensorboard, ...) fails: it belongs in
  a `console` block.
- ```console: commands of other tools, shown for reference, not checked.
- ```text: output samples and file listings, not checked.

Also checked: the README has exactly one pair of benchmark markers that
`bench/report.py` can rewrite, and every relative link or image exists. The
pages in docs/ follow the same typing rule and their sh blocks are checked the
same way; their python blocks need a server or a dataset, so they are not run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
RUN_PLACEHOLDER = "runs/quick"
CHECKED = ("python", "sh")
UNCHECKED = ("console", "text")


def _blocks(path: str = README) -> list[tuple[int, str, str]]:
    """(line number of the opening fence, language tag, body) of every fenced block."""
    blocks, lines = [], open(path, encoding="utf-8").read().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*```(.*)$", lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i + 1, m.group(1).strip(), []
        i += 1
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"{path}:{start}: the code block is never closed")
        blocks.append((start, lang, "\n".join(body)))
        i += 1
    return blocks


DOCS = sorted(os.path.join("docs", name) for name in os.listdir(os.path.join(ROOT, "docs"))
              if name.endswith(".md"))
BLOCKS = _blocks()
DOC_BLOCKS = {page: _blocks(os.path.join(ROOT, page)) for page in DOCS}


def _ids(kind: str, docs: bool = False) -> list:
    pages = {"README.md": BLOCKS, **(DOC_BLOCKS if docs else {})}
    return [pytest.param(body, id=f"{page}:{line}")
            for page, blocks in pages.items() for line, lang, body in blocks if lang == kind]


def test_every_block_is_typed():
    pages = {"README.md": BLOCKS, **DOC_BLOCKS}
    bad = [f"{page}:{line}: ```{lang}" for page, blocks in pages.items()
           for line, lang, _ in blocks if lang not in CHECKED + UNCHECKED]
    assert not bad, (f"blocks must be typed {', '.join(CHECKED + UNCHECKED)} "
                     f"(see this file's docstring): {bad}")


# ------------------------------------------------------------------ python blocks

@pytest.mark.parametrize("code", _ids("python"))
def test_python_block_runs(code, tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = code.replace(f'"{RUN_PLACEHOLDER}"', repr(tiny_run))
    exec(compile(source, README, "exec"), {"__name__": "__readme__"})


# ------------------------------------------------------------------ shell blocks

def _commands(body: str) -> list[list[str]]:
    """The words of each command of a shell block."""
    joined, pending = [], ""
    for line in body.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    commands = []
    for line in joined:
        words = shlex.split(line, comments=True)
        while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
            words = words[1:]   # TF_CONFIG=... vidgen train ...
        if words:
            commands.append(words)
    return commands


def _make_targets() -> set[str]:
    targets = set()
    for line in open(os.path.join(ROOT, "Makefile"), encoding="utf-8"):
        m = re.match(r"^([A-Za-z0-9_.-][A-Za-z0-9_. -]*):(?!=)", line)
        if m:
            targets.update(m.group(1).split())
    return targets


def _parsers() -> dict:
    from export.cli import build_parser as export_parser
    from serving.cli import build_parser as serving_parser
    from vidgen.cli import build_parser as vidgen_parser

    return {"vidgen": vidgen_parser, "vidgen-export": export_parser,
            "vidgen-serve": serving_parser}


def _check_vidgen(words: list[str], build_parser) -> str | None:
    """Why a vidgen, vidgen-export or vidgen-serve command line is wrong (None: it is fine)."""
    from vidgen.config import apply_overrides
    from vidgen.errors import ConfigError
    from vidgen.presets import PRESETS, get_preset

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stderr):
            args = build_parser().parse_args(words[1:])
    except SystemExit as e:
        said = stderr.getvalue().strip().splitlines()
        return f"the argument parser exited ({e.code}): {said[-1] if said else ''}"
    preset = getattr(args, "preset", None)
    if preset is not None and preset not in PRESETS:
        return f"unknown preset {preset!r}"
    overrides = getattr(args, "overrides", None) or []
    if overrides:
        try:
            apply_overrides(get_preset(preset or "quick"), overrides)
        except ConfigError as e:
            return f"--set refused: {e}"
    return None


def _check(words: list[str], parsers: dict, targets: set[str]) -> str | None:
    program = words[0]
    if program in parsers:
        return _check_vidgen(words, parsers[program])
    if program == "make":
        goals = [w for w in words[1:] if "=" not in w and not w.startswith("-")]
        missing = [g for g in goals if g not in targets]
        return f"no Makefile target {missing}" if missing else None
    if program in ("python", "python3") and len(words) > 2 and words[1] == "-m":
        found = importlib.util.find_spec(words[2]) is not None
        return None if found else f"module {words[2]!r} is not importable"
    return (f"{program!r} is not a vidgen, make or python -m command: "
            "put it in a ```console block")


@pytest.mark.parametrize("body", _ids("sh", docs=True))
def test_shell_block_parses(body, monkeypatch):
    monkeypatch.chdir(ROOT)
    parsers, targets = _parsers(), _make_targets()
    commands = _commands(body)
    assert commands, "an empty sh block"
    errors = [f"{shlex.join(words)}\n    -> {why}" for words in commands
              if (why := _check(words, parsers, targets))]
    assert not errors, "\n".join(errors)


# ------------------------------------------------------------------ the rest

def test_bench_markers_can_be_rewritten():
    from bench.report import END, START, replace_between_markers

    text = open(README, encoding="utf-8").read()
    assert text.count(START) == 1 and text.count(END) == 1
    inside = text.split(START, 1)[1].split(END, 1)[0]
    assert "| vidgen `quick` |" in inside, "the results table is missing between the markers"
    assert replace_between_markers(text, inside) == text


def test_relative_links_exist():
    missing = []
    for page in ["README.md", *DOCS]:
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        folder = os.path.dirname(os.path.join(ROOT, page))
        missing += [f"{page}: {t}" for t in re.findall(r"\]\(([^)\s]+)\)", text)
                    if not re.match(r"^[a-z]+:|^#", t)
                    and not os.path.exists(os.path.join(folder, t.split("#", 1)[0]))]
    assert not missing, f"links to missing files: {missing}"
