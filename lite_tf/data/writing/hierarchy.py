"""Two-level (Omniglot-style) and hierarchical (ImageNet-style) specs from a user-supplied hierarchy.

Both are read from a *parent map* file, child -> parent:
  JSON:  {"cat": "mammal", "bat": ["mammal", "flyer"], "mammal": "animal"}
  text:  one ``child<TAB>parent`` pair per line (several lines give a child several parents); blank
         lines and lines starting with ``#`` are ignored.

- ``superclass_file`` (two-level): every class names exactly one superclass. As in Meta-Dataset's
  Omniglot, the superclasses are split into TRAIN/VALID/TEST (fractions, or a split file naming
  superclasses); superclass ids follow the splits (sorted names within a split) and class ids follow
  the superclasses (sorted names within one).
- ``parent_file`` (hierarchical): a DAG whose leaves are the classes; every class has a parent, no
  class is a parent, and there is no cycle. Classes are split (fractions, or a split file naming
  classes or internal nodes, a node standing for every class under it). Each split's subgraph holds
  its classes and their ancestors; Meta-Dataset needs the splits' node sets to be disjoint, so a node
  above classes of several splits goes to the first of TRAIN, VALID, TEST (name subtree roots in
  the split file to keep VALID/TEST hierarchies whole, as Meta-Dataset's ImageNet split does).
  Within a split, class ids follow the sorted class names.

The specs are lite_tf.data.metadataset.spec objects, written with the same JSON schema as Meta-Dataset's files
(node ``wn_id``/``words``/``children_ids``/``parents_ids``; per-split ``images_per_class`` over every
node), so both lite_tf's reader and Meta-Dataset's load them.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Sequence

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing.errors import ConvertError, input_json, read_input_text

SPLITS = spec_lib.SPLITS


def read_parent_map(path: str) -> Dict[str, List[str]]:
    """child -> parents (in file order, without repeats) from a JSON or tab-separated text file."""
    path = os.fspath(path)
    text = read_input_text(path, "hierarchy")
    parents: Dict[str, List[str]] = {}

    def add(child, parent, where):
        if not isinstance(child, str) or not isinstance(parent, str) or not child or not parent:
            raise ConvertError(f"{where}: child and parent must be non-empty names.")
        if child == parent:
            raise ConvertError(f"{where}: {child!r} is its own parent.")
        if parent not in parents.setdefault(child, []):
            parents[child].append(parent)

    data = input_json(text, path, "hierarchy")
    if data is not None:
        for child, value in data.items():
            for parent in value if isinstance(value, list) else [value]:
                add(child, parent, f"Hierarchy file {path}, entry {child!r}")
        return parents
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in raw.rstrip("\n").split("\t")]
        if len(fields) != 2:
            raise ConvertError(f"Hierarchy file {path} line {number}: expected 'child<TAB>parent', got {line!r}.")
        add(fields[0], fields[1], f"Hierarchy file {path} line {number}")
    return parents


# ----------------------------------------------------------------------------- two-level
def superclasses_of(parents: Mapping[str, Sequence[str]], classes: Sequence[str], path: str) -> Dict[str, str]:
    """class -> its one superclass; every class must have exactly one, and no class may be one."""
    missing = [c for c in classes if c not in parents]
    if missing:
        raise ConvertError(f"Superclass file {path} gives no superclass for {len(missing)} class(es): {missing[:10]}.")
    several = [c for c in classes if len(parents[c]) != 1]
    if several:
        raise ConvertError(f"Superclass file {path} gives class {several[0]!r} {len(parents[several[0]])} "
                           f"superclasses {parents[several[0]]}; a two-level dataset needs exactly one.")
    mapping = {c: parents[c][0] for c in classes}
    clash = sorted(set(mapping.values()) & set(classes))
    if clash:
        raise ConvertError(f"Superclass file {path}: {clash[:5]} are both classes and superclasses.")
    return mapping


def bilevel_order(superclass_splits: Mapping[spec_lib.Split, Sequence[str]],
                  superclass_of: Mapping[str, str]) -> Dict[spec_lib.Split, List[str]]:
    """Classes per split in Meta-Dataset's order: by superclass (sorted per split), then class name."""
    members: Dict[str, List[str]] = {}
    for name, superclass in superclass_of.items():
        members.setdefault(superclass, []).append(name)
    return {split: [c for s in sorted(superclass_splits[split]) for c in sorted(members.get(s, []))]
            for split in SPLITS}


def make_bilevel_spec(name: str, path: str, superclass_splits: Mapping[spec_lib.Split, Sequence[str]],
                      superclass_of: Mapping[str, str], class_names: Mapping[int, str],
                      images_per_class: Mapping[int, int]) -> spec_lib.BiLevelDatasetSpec:
    """The BiLevel spec of classes numbered as :func:`bilevel_order` lists them."""
    superclass_names, classes_per_superclass = {}, {}
    for split in SPLITS:
        for superclass in sorted(superclass_splits[split]):
            sid = len(superclass_names)
            superclass_names[sid] = superclass
            classes_per_superclass[sid] = sum(1 for c in class_names.values() if superclass_of[c] == superclass)
    return spec_lib.BiLevelDatasetSpec(
        name, path, {s: len(superclass_splits[s]) for s in SPLITS}, classes_per_superclass, images_per_class,
        class_names, superclass_names)


# ----------------------------------------------------------------------------- hierarchical
def check_dag(parents: Mapping[str, Sequence[str]], classes: Sequence[str], path: str) -> None:
    """Every class has a parent and no child; the graph has no cycle (errors name the nodes)."""
    orphans = [c for c in classes if c not in parents]
    if orphans:
        raise ConvertError(f"Hierarchy file {path} gives no parent for {len(orphans)} class(es): {orphans[:10]}.")
    class_set = set(classes)
    inner = sorted({p for ps in parents.values() for p in ps} & class_set)
    if inner:
        raise ConvertError(f"Hierarchy file {path}: class(es) {inner[:5]} are parents of other nodes; classes "
                           "must be the leaves of the hierarchy.")
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    for start in parents:
        if state.get(start):
            continue
        state[start] = 1
        stack = [(start, iter(parents.get(start, ())))]
        while stack:
            node, it = stack[-1]
            parent = next(it, None)
            if parent is None:
                state[node] = 2
                stack.pop()
            elif state.get(parent) == 1:
                cycle = [n for n, _ in stack] + [parent]
                raise ConvertError(f"Hierarchy file {path} has a cycle: {' -> '.join(cycle[cycle.index(parent):])}.")
            elif state.get(parent) is None:
                state[parent] = 1
                stack.append((parent, iter(parents.get(parent, ()))))


def _ancestors(parents: Mapping[str, Sequence[str]], nodes: Sequence[str]) -> set:
    seen, todo = set(nodes), list(nodes)
    while todo:
        for parent in parents.get(todo.pop(), ()):
            if parent not in seen:
                seen.add(parent)
                todo.append(parent)
    return seen


def leaves_under(parents: Mapping[str, Sequence[str]], classes: Sequence[str]) -> Dict[str, List[str]]:
    """Every node -> the sorted classes below it (a class -> itself)."""
    under: Dict[str, set] = {}
    for name in classes:
        for node in _ancestors(parents, [name]):
            under.setdefault(node, set()).add(name)
    return {node: sorted(names) for node, names in under.items()}


def expand_nodes(parents: Mapping[str, Sequence[str]], classes: Sequence[str]):
    """A split-file hook: the name of an internal node stands for every class under it."""
    under = leaves_under(parents, classes)

    def expand(listed):
        return {split: [c for n in names for c in under.get(n, [n])] for split, names in listed.items()}
    return expand


def split_subgraphs(parents: Mapping[str, Sequence[str]],
                    class_splits: Mapping[spec_lib.Split, Sequence[str]]) -> Dict[str, List[dict]]:
    """Meta-Dataset's ``split_subgraphs``: disjoint node sets, each closed under its own edges."""
    owner: Dict[str, spec_lib.Split] = {}
    for split in SPLITS:  # a shared ancestor belongs to the first split above which it lies
        for node in sorted(_ancestors(parents, list(class_splits[split]))):
            owner.setdefault(node, split)
    out = {}
    for split in SPLITS:
        nodes = sorted(n for n, s in owner.items() if s == split)
        children: Dict[str, List[str]] = {n: [] for n in nodes}
        for node in nodes:
            for parent in parents.get(node, ()):
                if owner.get(parent) == split:
                    children[parent].append(node)
        out[split.value] = [{"wn_id": n, "words": n, "children_ids": sorted(children[n]),
                             "parents_ids": sorted(p for p in parents.get(n, ()) if owner.get(p) == split)}
                            for n in nodes]
    return out


def make_hierarchical_spec(name: str, path: str, parents: Mapping[str, Sequence[str]],
                           class_splits: Mapping[spec_lib.Split, Sequence[str]], class_names: Mapping[int, str],
                           images_per_class: Mapping[int, int]) -> spec_lib.HierarchicalDatasetSpec:
    """The hierarchical spec of classes numbered per split in sorted order (class_names: id -> name)."""
    return spec_lib.HierarchicalDatasetSpec(name, path, split_subgraphs(parents, class_splits), class_names,
                                            images_per_class)
