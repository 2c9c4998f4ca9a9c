"""The house rules, checked on the source: imports run down the layers README's Layout section names,
library code raises only errors on the one base, the install adds no generic top-level package, and
each experiment file chain binds LITE's h and chunk size once."""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys

import pytest

from lite_tf import _EXPORTS as EXPORTS  # the public face's name -> module (lazy: imports nothing)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# source folder -> installed package
PACKAGES = {"lite_tf": "lite_tf", "learners": "lite_tf.learners", "tools": "lite_tf.tools"}

# README "Layout": top to bottom; a module may import its own layer and the layers below it.
LAYERS = [
    ("launchers", {"tools"}),
    ("orchestration", {"experiment", "quickstart", "weights", "bench", "export", "plan"}),
    ("evaluation", {"eval"}),
    ("plugins", {"learners", "sources"}),
    ("models", {"model", "lite", "learner", "heads", "macs", "backbones", "callbacks", "model_dir", "distribute",
                "precision", "clips", "remat", "optimizers"}),
    ("data", {"data"}),
    ("base", {"errors", "faults", "gin_errors", "registry", "atomic", "images", "memory", "runtime", "episode", "source", "cli",
              "lite_tf"}),
]
LEVEL = {unit: level for level, (_, units) in enumerate(LAYERS) for unit in units}


def _modules():
    for folder, package in PACKAGES.items():
        for directory, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    relative = os.path.relpath(path, os.path.join(ROOT, folder))[:-3].replace(os.sep, ".")
                    module = package if relative == "__init__" else f"{package}.{relative.removesuffix('.__init__')}"
                    yield module, path


def _unit(module: str):
    """The layer unit of a lite_tf module: its first component below lite_tf (the package itself: 'lite_tf')."""
    parts = module.split(".")
    if parts[0] != "lite_tf":
        return None
    return parts[1] if len(parts) > 1 else "lite_tf"


def _imported(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lite_tf":  # from lite_tf import errors / EpisodicModel -> the defining module
                yield from (EXPORTS.get(alias.name, f"lite_tf.{alias.name}") for alias in node.names)
            else:
                yield node.module


def test_every_unit_has_a_layer():
    units = {_unit(module) for module, _ in _modules()}
    assert units <= set(LEVEL), f"units without a layer in README's Layout: {sorted(units - set(LEVEL))}"


def test_no_module_imports_a_higher_layer():
    upward = []
    for module, path in _modules():
        unit = _unit(module)
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for name in _imported(tree):
            target = _unit(name)
            if target is None or target == unit or module == "lite_tf" or name.startswith("lite_tf.tools") and unit == "tools":
                continue
            if LEVEL[target] < LEVEL[unit]:
                upward.append(f"{module} ({LAYERS[LEVEL[unit]][0]}) imports {name} ({LAYERS[LEVEL[target]][0]})")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


BARE = {"ValueError", "TypeError", "KeyError"}


def test_library_code_raises_only_errors_on_the_one_base():
    bare = []
    for module, path in _modules():
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id in BARE:
                    bare.append(f"{os.path.relpath(path, ROOT)}:{node.lineno} raises {exc.id}")
    assert not bare, "raise a lite_tf.errors class (LiteTfError base) instead:\n" + "\n".join(bare)


def test_the_install_adds_no_generic_top_level_package(tmp_path):
    """`pip install -e .` maps learners/ and tools/ to lite_tf.learners / lite_tf.tools only."""
    script = ("import importlib.util as u, json; import lite_tf.learners.protonets, lite_tf.tools.train; "
              "print(json.dumps([u.find_spec('learners') is None, u.find_spec('tools') is None]))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[true, true]"


def _chain(path: str) -> list:
    """The gin files an experiment reads, includes first (in order)."""
    files = []
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        text = handle.read()
    for included in re.findall(r"^include '([^']+)'", text, re.M):
        files += _chain(included)
    return files + [(path, text)]


EXPERIMENTS = sorted(os.path.join("gin", "experiments", name) for name in os.listdir(os.path.join(ROOT, "gin", "experiments"))) + [os.path.join("gin", "quickstart.gin")]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_h_and_chunk_size_are_bound_once_per_experiment_chain(experiment):
    for parameter in ("h", "chunk_size"):
        where = [path for path, text in _chain(experiment)
                 for _ in re.findall(rf"^LiteConfig\.{parameter}\s*=", text, re.M)]
        assert len(where) == 1, f"{experiment}: LiteConfig.{parameter} bound in {where or 'no file'}"


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (tests/*helpers.py, vtab_mock.py, ...), not in test files."""
    tests = os.path.join(ROOT, "tests")
    crossing = []
    for name in sorted(os.listdir(tests)):
        if name.endswith(".py"):
            with open(os.path.join(tests, name), encoding="utf-8") as handle:
                tree = ast.parse(handle.read(), name)
            crossing += [f"{name} imports {module}" for module in _imported(tree)
                         if module.startswith("tests.test_")]
            crossing += [f"{name} imports tests.{alias.name}" for node in ast.walk(tree)
                         if isinstance(node, ast.ImportFrom) and node.module == "tests"
                         for alias in node.names if alias.name.startswith("test_")]
    assert not crossing, "\n".join(crossing)
