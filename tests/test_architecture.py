"""The house's rules, checked on the import graph (import-linter and grimp read every import,
those inside functions too): rooms import only the rooms below them (.importlinter's floors),
spaces / evaluation / config / runlog import no TensorFlow, and no module imports itself
back through any chain."""
import os
import sys

import grimp
from importlinter import api as importlinter_api  # noqa: F401  (import-linter is installed)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _import_cycles(graph) -> list[list[str]]:
  """Strongly connected components of more than one module (Tarjan), each sorted."""
  modules = sorted(graph.modules)
  edges = {m: sorted(set(graph.find_modules_directly_imported_by(m)) & set(modules))
           for m in modules}
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for other in edges[module]:
      if other not in index:
        visit(other)
        low[module] = min(low[module], low[other])
      elif other in on_stack:
        low[module] = min(low[module], index[other])
    if low[module] == index[module]:
      component = []
      while True:
        other = stack.pop()
        on_stack.discard(other)
        component.append(other)
        if other == module:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for module in modules:
    if module not in index:
      visit(module)
  return found


def test_no_module_imports_itself_back():
  sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
  graph = grimp.build_graph("enas_face", cache_dir=None)
  cycles = _import_cycles(graph)
  details = []
  for cycle in cycles:
    for importer in cycle:
      for imported in set(graph.find_modules_directly_imported_by(importer)) & set(cycle):
        lines = [d["line_number"] for d in graph.get_import_details(importer=importer,
                                                                    imported=imported)]
        details.append(f"{importer} -> {imported} (line {lines})")
  assert not cycles, "import circle(s):\n" + "\n".join(details)


def test_import_linter_contracts_hold():
  """`lint-imports` on .importlinter: a broken contract names the offending import."""
  from importlinter.cli import lint_imports  # pylint: disable=import-outside-toplevel
  cwd = os.getcwd()
  os.chdir(ROOT)
  try:
    assert lint_imports(config_filename=os.path.join(ROOT, ".importlinter"), no_cache=True) == 0
  finally:
    os.chdir(cwd)


def test_the_cycle_finder_finds_a_planted_circle():
  """The check above can fail: a two-module circle is reported."""
  class Graph:  # the two grimp calls the finder makes
    modules = {"a", "b", "c"}

    @staticmethod
    def find_modules_directly_imported_by(module):
      return {"a": {"b"}, "b": {"a"}, "c": {"a"}}[module]

  assert _import_cycles(Graph()) == [["a", "b"]]
