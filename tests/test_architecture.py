"""The package's import map: layers you can draw.

Every ``import`` of the package is read from the source (function-level ones too: a lazy import is still an arrow)
and checked against the floors below: a module may import its own room (sub-package) and rooms on lower floors only,
rooms import no circle of modules, the runtime imports nothing of the project and nothing of torch / OpenMMLab, and
nothing loads project code by file path or changes ``sys.path``. The package's ``__init__`` is the plugin's entry
point (it registers everything) and sits above every room.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from helpers import REPO

PACKAGE = REPO / 'shufflenet_det'

#: The floors. A room imports only its own modules and rooms on lower floors.
FLOORS: dict[str, int] = {
    'runtime': 0, 'version': 0,           # torch-free; the board runtime
    'utils': 1, 'registry': 1,            # the shared layer
    'compat': 2, 'models': 2, 'datasets': 2,
    'analysis': 3, 'converters': 3, 'engine': 3,
    'weights': 4,
    'deploy': 5, 'nas': 5,
    'benchmark': 6,
    'apps': 7,
}
#: What the runtime may import besides itself: the standard library, numpy and the optional runtimes.
RUNTIME_THIRD_PARTY = {'numpy', 'ncnn', 'onnxruntime', 'cv2', 'PIL'}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


MODULES: dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of ``path`` (absolute names; ``from pkg import sub`` names the
    submodule when there is one)."""
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ''
            for alias in node.names:
                sub = f'{base}.{alias.name}'
                found.append((sub if sub in MODULES else base, node.lineno))
    return found


def _room(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '<entry>'


def _project_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _ in _imports(name, path):
            while target and target not in MODULES and target.startswith('shufflenet_det.'):
                target = target.rpartition('.')[0]  # `import shufflenet_det.a.b.func`-like names
            if target in MODULES and target != name:
                edges[name].add(target)
    return edges


def test_every_room_has_a_floor() -> None:
    rooms = {_room(m) for m in MODULES} - {'<entry>'}
    assert rooms <= set(FLOORS), f'rooms without a floor in FLOORS: {sorted(rooms - set(FLOORS))}'


def test_no_upward_or_sideways_arrows() -> None:
    wrong = []
    for source, targets in _project_edges().items():
        if _room(source) == '<entry>':
            continue  # the plugin's entry point registers every room
        for target in targets:
            a, b = _room(source), _room(target)
            if a != b and (b == '<entry>' or FLOORS[b] >= FLOORS[a]):
                wrong.append(f'{source} (floor {FLOORS[a]}) imports {target} '
                             f"(floor {'top' if b == '<entry>' else FLOORS[b]})")
    assert not wrong, '\n'.join(sorted(wrong))


def test_no_import_circles() -> None:
    edges = _project_edges()
    # Tarjan's strongly connected components; a component of more than one module is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(edges)))
    for v in edges:
        if v not in index:
            visit(v)
    assert not circles, f'import circles: {circles}'


def test_runtime_imports_nothing_but_itself_numpy_and_the_runtimes() -> None:
    stdlib = set(sys.stdlib_module_names)
    wrong = []
    for name, path in MODULES.items():
        if _room(name) != 'runtime':
            continue
        for target, line in _imports(name, path):
            top = target.split('.')[0]
            if target.startswith('shufflenet_det.runtime') or top in stdlib | RUNTIME_THIRD_PARTY | {'__future__'}:
                continue
            wrong.append(f'{path.relative_to(REPO)}:{line} imports {target}')
    assert not wrong, '\n'.join(wrong)


def test_runtime_uses_relative_imports_only() -> None:
    """The runtime folder copied alone to a board is a package: it names no ``shufflenet_det`` module absolutely."""
    wrong = []
    for name, path in MODULES.items():
        if _room(name) != 'runtime':
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or '').startswith('shufflenet_det'):
                wrong.append(f'{path.relative_to(REPO)}:{node.lineno}')
            if isinstance(node, ast.Import) and any(a.name.startswith('shufflenet_det') for a in node.names):
                wrong.append(f'{path.relative_to(REPO)}:{node.lineno}')
    assert not wrong, wrong


#: Ways of loading code by file path or changing where imports come from.
PATH_LOADING = ('spec_from_file_location', 'SourceFileLoader', 'run_path', 'sys.path.insert', 'sys.path.append',
                'sys.path[')


#: The one file-path run in the tree: mmdet ships its tools (train.py, test.py) as scripts, not as a module, and
#: ``python -m shufflenet_det.apps.mmdet_tool`` runs them unchanged with the plugin imported.
RUNS_MMDET_SCRIPTS = {('shufflenet_det/apps/mmdet_tool.py', 'run_path')}


@pytest.mark.parametrize('folder', ['shufflenet_det', 'tools'])
def test_nothing_loads_code_by_file_path(folder: str) -> None:
    wrong = [f'{p.relative_to(REPO)}: {needle}' for p in sorted((REPO / folder).rglob('*.py'))
             for needle in PATH_LOADING
             if needle in p.read_text() and (str(p.relative_to(REPO)), needle) not in RUNS_MMDET_SCRIPTS]
    assert not wrong, '\n'.join(wrong)


def test_the_library_never_imports_tools() -> None:
    wrong = [f'{path.relative_to(REPO)}:{line} imports {target}' for name, path in MODULES.items()
             for target, line in _imports(name, path) if target.split('.')[0] == 'tools']
    assert not wrong, wrong
