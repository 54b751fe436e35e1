"""Every command the docs show can run: each `python -m enas_face.main ...`, `python tools/...`
and `python bench/...` in README.md, BUILD.md and docs/*.md names a program that exists and
passes only flags it defines; every relative link points at a file (and heading) that exists.
Cheap: flags are read from the definitions (absl's registry for enas_face.main, the scripts'
own add_argument / DEFINE_* calls for tools and benchmarks), nothing is trained."""
from __future__ import annotations

import dataclasses
import glob
import os
import re

import pytest
from absl import flags

from enas_face import flags as enas_flags  # noqa: F401  (defines every enas_face.main flag)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = sorted(["README.md", "BUILD.md"]
              + [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))])
# absl's own flags that every absl program accepts.
ABSL_FLAGS = {"flagfile", "helpfull", "help", "helpshort", "helpxml", "undefok", "verbosity", "v",
              "logtostderr", "alsologtostderr", "log_dir", "stderrthreshold", "only_check_args"}
PROGRAM = re.compile(r"python3?\s+(-m\s+enas_face\.main|(?:tools|bench)/[\w./-]+\.py)")


@dataclasses.dataclass
class Command:
  doc: str
  line: int
  program: str  # "enas_face.main" or a script path relative to the repository
  args: list[str]

  def where(self) -> str:
    return f"{self.doc}:{self.line}"


def documented_commands() -> list[Command]:
  """The commands of every doc; a trailing backslash continues a command on the next line."""
  found = []
  for doc in DOCS:
    with open(os.path.join(ROOT, doc), encoding="utf-8") as handle:
      lines = handle.read().split("\n")
    for number, line in enumerate(lines, 1):
      for match in PROGRAM.finditer(line):
        text, index = line[match.end():], number
        while text.rstrip().endswith("\\") and index < len(lines):
          text = text.rstrip()[:-1] + " " + lines[index].lstrip().lstrip("#")
          index += 1
        text = re.split(r"`|\)\s|;|&&|\|", text)[0]  # the command ends at code's end
        program = match.group(1)
        program = "enas_face.main" if program.startswith("-m") else program
        found.append(Command(doc, number, program, text.split()))
  return found


def flag_names(args: list[str]) -> list[str]:
  """The --names an argument list passes (--x=1, --x 1, --nox for booleans), up to a `--`."""
  names = []
  for arg in args:
    if arg == "--":
      break
    match = re.fullmatch(r"--([A-Za-z][\w-]*)(=.*)?", arg)
    if match:
      names.append(match.group(1))
  return names


def passthrough(args: list[str]) -> list[str]:
  """Arguments after a bare `--`: a benchmark passes them to every enas_face.main run."""
  return args[args.index("--") + 1:] if "--" in args else []


def main_flags() -> set[str]:
  return set(flags.FLAGS) | ABSL_FLAGS


def script_flags(path: str) -> set[str]:
  """Flags a script defines: argparse add_argument("--x"), absl DEFINE_*("x"), and every
  enas_face.main flag when it imports enas_face.flags (the tools that take a run's flags)."""
  with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
    source = handle.read()
  names = set(re.findall(r"add_argument\(\s*\"--([\w-]+)\"", source))
  names |= set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", source))
  if re.search(r"from enas_face import flags|import enas_face\.flags", source):
    names |= main_flags()
  if "DEFINE_" in source or "absl" in source:
    names |= ABSL_FLAGS
  names |= {"help", "h"}
  return names


def booleans_negated(names: set[str]) -> set[str]:
  return names | {"no" + name for name in names}


def test_the_docs_show_commands():
  commands = documented_commands()
  assert len(commands) > 40  # the checker reads them (a broken pattern would read none)
  assert {c.program for c in commands} >= {"enas_face.main", "tools/align_dataset.py"}


def test_every_documented_command_names_a_program_and_flags_that_exist():
  known_main = booleans_negated(main_flags())
  problems = []
  for command in documented_commands():
    if command.program == "enas_face.main":
      known = known_main
    else:
      if not os.path.isfile(os.path.join(ROOT, command.program)):
        problems.append(f"{command.where()}: {command.program} does not exist")
        continue
      known = booleans_negated(script_flags(command.program))
    for name in flag_names(command.args):
      if name not in known:
        problems.append(f"{command.where()}: {command.program} has no flag --{name}")
    for name in flag_names(passthrough(command.args)):
      if name not in known_main:
        problems.append(f"{command.where()}: --{name} (passed to enas_face.main) is no flag")
  assert not problems, "\n".join(problems)


def test_the_checker_catches_a_renamed_flag_and_a_missing_tool():
  """The check above can fail."""
  assert "no_such_flag" not in booleans_negated(main_flags())
  assert "run_dir" in main_flags() and "strategy" in main_flags()  # an alias counts
  assert not os.path.isfile(os.path.join(ROOT, "tools/no_such_tool.py"))
  assert flag_names(["--a=1", "--b", "x", "--", "--c"]) == ["a", "b"]
  assert passthrough(["x", "--", "--c=2"]) == ["--c=2"]


def _slug(heading: str) -> str:
  """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
  text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
  return text.replace(" ", "-")


def _anchors(path: str) -> set[str]:
  with open(path, encoding="utf-8") as handle:
    text = handle.read()
  text = re.sub(r"```.*?```", "", text, flags=re.S)  # headings, not comments in code
  return {_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, flags=re.M)}


def test_every_relative_link_between_the_docs_resolves():
  problems = []
  for doc in DOCS:
    path = os.path.join(ROOT, doc)
    with open(path, encoding="utf-8") as handle:
      text = re.sub(r"```.*?```", "", handle.read(), flags=re.S)
    for match in re.finditer(r"\]\(([^)\s]+)\)", text):
      target = match.group(1)
      if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
        continue
      file_part, _, anchor = target.partition("#")
      resolved = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part \
          else path
      if not os.path.exists(resolved):
        problems.append(f"{doc}: link to {target}: no such file")
      elif anchor and resolved.endswith(".md") and anchor not in _anchors(resolved):
        problems.append(f"{doc}: link to {target}: no such heading")
  assert not problems, "\n".join(problems)


@pytest.mark.parametrize("heading,slug", [("## Two commands", "two-commands"),
                                          ("### LFW View 1 (a sanity check)",
                                           "lfw-view-1-a-sanity-check")])
def test_heading_anchors_follow_the_repository_host(heading, slug):
  assert _slug(heading.lstrip("#")) == slug
