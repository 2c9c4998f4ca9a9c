"""Class splits: Meta-Dataset splits *classes* (not images) into TRAIN/VALID/TEST.

Either fractions (the sorted names are shuffled with ``seed``; the same seed gives the same split)
or a split file naming the members of each split:
  JSON:  {"train": ["cat", "dog"], "valid": ["cow"], "test": ["emu"]}
  text:  a header line per split (``train:`` or ``[train]``; also valid/validation/test), then one
         name per line; blank lines and lines starting with ``#`` are ignored.
Members the split file does not name are left out (a warning lists them). The members are classes,
or superclasses for a two-level dataset (see hierarchy.py).
"""
from __future__ import annotations

import hashlib
import logging
import os
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.data.writing.errors import ConvertError, input_json, read_input_text

log = logging.getLogger(__name__)

DEFAULT_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
_SPLIT_ALIASES = {"train": spec_lib.TRAIN, "valid": spec_lib.VALID, "validation": spec_lib.VALID,
                  "val": spec_lib.VALID, "test": spec_lib.TEST}


def split_by_fractions(class_names: Sequence[str], fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
                       seed: int = 0) -> Dict[spec_lib.Split, List[str]]:
    """Deterministic class split: sorted names shuffled with ``seed``; VALID and TEST sizes rounded.

    Within a split the classes are kept in sorted order.
    """
    fractions = [float(f) for f in fractions]
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConvertError(f"Split fractions must be three non-negative numbers (TRAIN, VALID, TEST) that sum "
                           f"to 1; got {list(fractions)}.")
    names = sorted(class_names)
    order = np.random.default_rng(seed).permutation(len(names))
    num_valid = int(round(fractions[1] * len(names)))
    num_test = min(int(round(fractions[2] * len(names))), len(names) - num_valid)
    num_train = len(names) - num_valid - num_test
    shuffled = [names[i] for i in order]
    groups = (shuffled[:num_train], shuffled[num_train:num_train + num_valid], shuffled[num_train + num_valid:])
    return {split: sorted(group) for split, group in zip(spec_lib.SPLITS, groups)}


def _split_of_key(key: str, where: str) -> spec_lib.Split:
    split = _SPLIT_ALIASES.get(key.strip().lower())
    if split is None:
        raise ConvertError(f"{where}: unknown split {key!r}; expected train, valid (or validation) or test.")
    return split


def read_split_file(path: str) -> Dict[spec_lib.Split, List[str]]:
    """Parses a JSON or text split file (see the module docstring) into split -> class names."""
    path = os.fspath(path)
    text = read_input_text(path, "split")
    splits: Dict[spec_lib.Split, List[str]] = {split: [] for split in spec_lib.SPLITS}
    data = input_json(text, path, "split")
    if data is not None:
        for key, names in data.items():
            split = _split_of_key(key, f"Split file {path}")
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConvertError(f"Split file {path}: {key!r} must list class names (strings).")
            splits[split].extend(names)
        return splits
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = line[1:-1] if line.startswith("[") and line.endswith("]") else (
            line[:-1] if line.endswith(":") else None)
        if header is not None and header.strip().lower() in _SPLIT_ALIASES:
            current = _SPLIT_ALIASES[header.strip().lower()]
            continue
        if line.startswith("[") and line.endswith("]"):
            _split_of_key(line[1:-1], f"Split file {path} line {number}")
        if current is None:
            raise ConvertError(f"Split file {path} line {number}: class {line!r} comes before any split header "
                               "(train:, valid: or test:).")
        splits[current].append(line)
    return splits


def check_splits(splits: Mapping[spec_lib.Split, Sequence[str]], known: Sequence[str], where: str,
                 source: str) -> Dict[spec_lib.Split, List[str]]:
    """Every named class must exist and appear once; unnamed classes are dropped with a warning."""
    known_set = set(known)
    seen: Dict[str, spec_lib.Split] = {}
    unknown = []
    for split in spec_lib.SPLITS:
        for name in splits.get(split, []):
            if name not in known_set:
                unknown.append(name)
            elif name in seen:
                raise ConvertError(f"{where}: class {name!r} is listed in both {seen[name].value} and "
                                   f"{split.value}.")
            else:
                seen[name] = split
    if unknown:
        raise ConvertError(f"{where} names {len(unknown)} class(es) that {source} does not have: "
                           f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}.")
    if not seen:
        raise ConvertError(f"{where} assigns no class to any split.")
    left_out = [name for name in known if name not in seen]
    if left_out:
        log.warning("%s does not name %d class(es) of %s; they are left out: %s%s", where, len(left_out), source,
                    left_out[:10], " ..." if len(left_out) > 10 else "")
    return {split: list(splits.get(split, [])) for split in spec_lib.SPLITS}


def choose_splits(class_names: Sequence[str], split_file: Optional[str], fractions: Sequence[float],
                  seed: int, source: str, expand: Optional[Callable[[Dict], Dict]] = None
                  ) -> Tuple[Dict[spec_lib.Split, List[str]], dict]:
    """The split of ``class_names`` and its description for the manifest.

    expand: applied to a split file's lists before they are checked (a hierarchy replaces the name of
    an internal node by the classes under it).
    """
    if split_file is not None:
        listed = read_split_file(split_file)
        if expand is not None:
            listed = expand(listed)
        with open(split_file, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        splits = check_splits(listed, class_names, f"Split file {split_file}", source)
        return splits, {"split_file": os.path.abspath(split_file), "sha256": digest}
    return split_by_fractions(class_names, fractions, seed), {"fractions": [float(f) for f in fractions],
                                                              "seed": int(seed)}
