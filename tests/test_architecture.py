"""The package's shape, checked: no import cycle, dependencies pointing one way, modules of a
readable size, and every consumer asking the task layer instead of naming a kind of model."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "edgedigits"
# Modules allowed past MAX_LINES, each with the reason stated at its top.
LONG_MODULES: set[str] = set()  # none today
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at the top or inside functions)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                    node.module.startswith("edgedigits"):
                submodules = [f"{node.module}.{a.name}" for a in node.names
                              if f"{node.module}.{a.name}" in modules]
                targets = submodules if len(submodules) == len(node.names) else \
                    [node.module, *submodules]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("edgedigits")]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def test_no_import_cycle():
    graph = _imports(_modules())
    # a package's __init__ importing its own modules, which import siblings, is no cycle
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if target.startswith(node + "."):
                continue  # a package importing its own submodule
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_dependencies_point_one_way():
    graph = _imports(_modules())
    forbidden = [("edgedigits.runtime", "edgedigits.cli"),
                 ("edgedigits.runtime", "edgedigits.reading"),
                 ("edgedigits.conversion", "edgedigits.serving"),
                 ("edgedigits.tasks", "edgedigits.runtime"),
                 ("edgedigits.tasks", "edgedigits.reading"),
                 ("edgedigits.image", "edgedigits.tasks"),
                 ("edgedigits.data", "edgedigits.tasks")]
    found = [(a, b) for a, b in ((m, t) for m in graph for t in graph[m])
             for low, high in forbidden if a.startswith(low) and b.startswith(high)]
    assert not found, found


def test_modules_stay_readable():
    modules = _modules()
    long = {name: len(path.read_text().splitlines()) for name, path in modules.items()
            if len(path.read_text().splitlines()) > MAX_LINES}
    assert set(long) <= LONG_MODULES, long
    for name in LONG_MODULES:  # the reason is stated at the top
        assert "Over 400 lines on purpose" in modules[name].read_text()[:1200], name


def test_consumers_do_not_name_a_kind_of_model():
    """The readers (classify, video, server, DigitReader, benchmark) ask the task layer: none
    compares a model_type with a kind's name."""
    consumers = ["reading", "video", "serving", "benchmark"]
    for folder in consumers:
        for path in (PACKAGE / folder).rglob("*.py"):
            text = path.read_text()
            for kind in ("contract.NUMBER_READER", "contract.MODEL_TYPE"):
                assert kind not in text, f"{path.relative_to(ROOT)} names {kind}"


def test_the_runtime_loads_no_opencv():
    """An edge process that only runs a model (the benchmark's rows, the server's predictor)
    does not pay for OpenCV: the task layer it checks models against loads it on first use."""
    import subprocess
    import sys

    code = ("import sys, edgedigits.runtime.openvino_backend, edgedigits.tasks\n"
            "print('cv2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
