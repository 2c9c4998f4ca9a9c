"""Episode sampling (pure NumPy, seeded): which classes, and which records of each class.

Variable-way, variable-shot episodes follow Meta-Dataset's rules (defaults in brackets):
- ways ~ U[min_ways, min(max_ways_upper_bound, #classes)] [5, 50] (also at most
  max_support_set_size, so every class gets a support image); classes uniform without replacement;
- query per class = min(max_num_query, min over chosen classes of floor(count / 2)) [10];
- support budget S = min(max_support_set_size, sum_c floor(beta * min(max_support_size_contrib_per_class,
  count_c - query)) + 1) [500, 100], one beta ~ U(0, 1) per episode;
- shots n_c = min(floor(w_c / sum(w) * (S - ways)) + 1, count_c - query) with
  w_c = count_c * exp(u_c), u_c ~ U(min_log_weight, max_log_weight) [log 0.5, log 2].
Hierarchies (``use_hierarchy``): Omniglot picks an alphabet (uniform over the split's alphabets with
enough characters), then ways characters inside it; ImageNet picks a node of the split's DAG that
spans min_ways..max_spanning_leaves [392] leaves uniformly, and takes its leaves, subsampled to
max_ways_upper_bound when it spans more. ``use_hierarchy`` is one bool for every source, or a dict
from source (spec) name to bool, the sources it does not name keeping their hierarchy: the official
LITE code trains MD-v2 with ImageNet flat and Omniglot two-level
(``{'ilsvrc_2012': False, 'ilsvrc_2012_v2': False}``, gin/schedules/mdv2.gin).

Fixed mode: set ``num_ways`` (and/or ``num_support``: an int, or (low, high) drawn once per episode,
and/or ``num_query``); what is left unset follows the variable rules. With a hierarchy and fixed
ways, only alphabets / nodes with at least num_ways classes are eligible.

The records of one class are drawn without replacement, so no image appears twice in an episode.

Bad input fails fast, when the sampler is built, with the dataset, split and class named: a split with
fewer classes than the minimum way; a class with fewer than 2 images (variable mode) or fewer than
max shots + query images (fixed mode); a hierarchy with no eligible alphabet or node.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import gin
import numpy as np

from lite_tf.data.metadataset import spec as spec_lib
from lite_tf.errors import ConfigError, DataError


class SamplerError(DataError):
    """A dataset split that cannot yield the requested episodes."""


@dataclasses.dataclass
class EpisodeDescription:
    """One episode: absolute class ids and, per class, the record indices of support and query.

    Episode label ``i`` is ``class_ids[i]``.
    """

    class_ids: np.ndarray
    support: List[np.ndarray]
    query: List[np.ndarray]

    @property
    def way(self) -> int:
        return len(self.class_ids)

    @property
    def shots(self) -> np.ndarray:
        return np.array([len(s) for s in self.support])

    @property
    def queries(self) -> np.ndarray:
        return np.array([len(q) for q in self.query])

    @property
    def num_support(self) -> int:
        return int(self.shots.sum())

    @property
    def num_query(self) -> int:
        return int(self.queries.sum())


Shots = Union[None, int, Tuple[int, int], Sequence[int]]


def hierarchy_for(use_hierarchy, name: str) -> bool:
    """Whether source ``name`` samples through its hierarchy: ``use_hierarchy`` is a bool, or a mapping
    from source names to bools (names it lacks: True)."""
    if isinstance(use_hierarchy, bool):
        return use_hierarchy
    if isinstance(use_hierarchy, Mapping) and all(
            isinstance(key, str) and isinstance(value, bool) for key, value in use_hierarchy.items()):
        return use_hierarchy.get(name, True)
    raise ConfigError(f"EpisodeSampler.use_hierarchy must be a bool or a dict of source name -> bool "
                       f"(e.g. {{'ilsvrc_2012_v2': False}}); got {use_hierarchy!r}.")


@gin.configurable
class EpisodeSampler:
    """Draws :class:`EpisodeDescription` s from one split of one dataset; same seed, same episodes."""

    def __init__(self, spec, split, num_ways: Optional[int] = None, num_support: Shots = None,
                 num_query: Optional[int] = None, min_ways: int = 5, max_ways_upper_bound: int = 50,
                 max_num_query: int = 10, max_support_set_size: int = 500,
                 max_support_size_contrib_per_class: int = 100, min_log_weight: float = math.log(0.5),
                 max_log_weight: float = math.log(2.0), use_hierarchy: Union[bool, Mapping[str, bool]] = True,
                 max_spanning_leaves: int = 392, seed: Optional[int] = 0):
        self.spec = spec
        self.split = spec_lib.Split.of(split)
        self.num_ways = None if num_ways is None else int(num_ways)
        if num_support is not None and not isinstance(num_support, int):
            low, high = (int(v) for v in num_support)
            if not 1 <= low <= high:
                raise SamplerError(f"num_support range must satisfy 1 <= low <= high; got {num_support}.")
            num_support = (low, high)
        elif isinstance(num_support, int) and num_support < 1:
            raise SamplerError(f"num_support must be at least 1; got {num_support}.")
        self.num_support = num_support
        self.num_query = None if num_query is None else int(num_query)
        if self.num_query is not None and self.num_query < 1:
            raise SamplerError(f"num_query must be at least 1; got {num_query}.")
        self.min_ways = int(min_ways)
        self.max_ways_upper_bound = int(max_ways_upper_bound)
        self.max_num_query = int(max_num_query)
        self.max_support_set_size = int(max_support_set_size)
        self.max_support_size_contrib_per_class = int(max_support_size_contrib_per_class)
        self.min_log_weight = float(min_log_weight)
        self.max_log_weight = float(max_log_weight)
        self.max_spanning_leaves = int(max_spanning_leaves)
        self.rng = np.random.default_rng(seed)

        self.classes = np.asarray(spec.classes(self.split), dtype=np.int64)
        self.counts = {int(c): int(spec.images_per_class[c]) for c in self.classes}
        self._where = f"Dataset {spec.name!r} split {self.split.value}"
        self._check_classes()
        self.hierarchy = None
        use_hierarchy = hierarchy_for(use_hierarchy, spec.name)
        if use_hierarchy and isinstance(spec, spec_lib.BiLevelDatasetSpec):
            self._init_bilevel()
        elif use_hierarchy and isinstance(spec, spec_lib.HierarchicalDatasetSpec):
            self._init_dag()

    # -- set-up checks -----------------------------------------------------------------------
    @property
    def fewest_ways(self) -> int:
        return self.num_ways if self.num_ways is not None else self.min_ways

    @property
    def _way_cap(self) -> int:
        """Most ways in a variable-way episode: the support budget must give each class one image."""
        if self.num_support is None:
            return min(self.max_ways_upper_bound, self.max_support_set_size)
        return self.max_ways_upper_bound

    def _max_shots(self) -> int:
        if self.num_support is None:
            return 1
        return self.num_support if isinstance(self.num_support, int) else self.num_support[1]

    def _check_classes(self):
        if len(self.classes) < self.fewest_ways:
            mode = f"num_ways={self.num_ways}" if self.num_ways is not None else f"min_ways={self.min_ways}"
            raise SamplerError(
                f"{self._where} has {len(self.classes)} classes; episodes need at least {mode}."
            )
        if self.num_support is None and self.max_support_set_size < self.fewest_ways:
            raise SamplerError(
                f"max_support_set_size={self.max_support_set_size} is below the {self.fewest_ways} ways: "
                "every class needs one support image."
            )
        if self.num_support is None and self.num_query is None:
            need, why = 2, "variable-shot episodes need at least 2 (one support, one query)"
        else:
            need = self._max_shots() + (self.num_query or 1)
            why = (f"episodes with up to {self._max_shots()} shots and {self.num_query or 1} query image(s) "
                   "need that many")
        small = [c for c in self.classes if self.counts[int(c)] < need]
        if small:
            listed = ", ".join(
                f"class {c} ({self.counts[int(c)]} images, {self.spec.class_file(c) if self.spec.path else 'no path'})"
                for c in small[:5])
            raise SamplerError(
                f"{self._where}: {len(small)} class(es) have fewer than {need} images; {why}: {listed}"
                + (" ..." if len(small) > 5 else "") + ". Remove them from the split or change the episode shape."
            )

    def _init_bilevel(self):
        groups = [np.asarray(self.spec.classes_of_superclass(a), dtype=np.int64)
                  for a in self.spec.superclasses(self.split)]
        eligible = [g for g in groups if len(g) >= self.fewest_ways]
        if not eligible:
            raise SamplerError(
                f"{self._where}: no superclass has at least {self.fewest_ways} classes "
                f"(largest: {max((len(g) for g in groups), default=0)}); set use_hierarchy=False."
            )
        self.hierarchy = ("bilevel", eligible)

    def _init_dag(self):
        low = self.fewest_ways
        nodes = [np.asarray(leaves, dtype=np.int64)
                 for _, leaves in sorted(self.spec.leaves_under(self.split).items())
                 if low <= len(leaves) <= self.max_spanning_leaves]
        if not nodes:
            raise SamplerError(
                f"{self._where}: no node of the class hierarchy spans {low}..{self.max_spanning_leaves} "
                "leaves; set use_hierarchy=False."
            )
        self.hierarchy = ("dag", nodes)

    # -- sampling ----------------------------------------------------------------------------
    def _sample_classes(self) -> np.ndarray:
        rng = self.rng
        if self.hierarchy is None:
            pool = self.classes
        elif self.hierarchy[0] == "bilevel":
            groups = self.hierarchy[1]
            pool = groups[rng.integers(len(groups))]
        else:
            nodes = self.hierarchy[1]
            leaves = nodes[rng.integers(len(nodes))]
            cap = self.num_ways if self.num_ways is not None else self._way_cap
            if len(leaves) > cap:
                leaves = rng.choice(leaves, size=cap, replace=False)
            return np.asarray(leaves, dtype=np.int64)
        if self.num_ways is not None:
            way = self.num_ways
        else:
            way = int(rng.integers(self.min_ways, min(self._way_cap, len(pool)) + 1))
        return np.asarray(rng.choice(pool, size=way, replace=False), dtype=np.int64)

    def _num_query(self, counts: np.ndarray) -> int:
        if self.num_query is not None:
            return self.num_query
        if self.num_support is None:
            return int(min(self.max_num_query, (counts // 2).min()))
        return int(min(self.max_num_query, (counts - self._max_shots()).min()))

    def _shots(self, counts: np.ndarray, query: int) -> np.ndarray:
        rng = self.rng
        if self.num_support is not None:
            if isinstance(self.num_support, int):
                shots = self.num_support
            else:
                shots = int(rng.integers(self.num_support[0], self.num_support[1] + 1))
            return np.full(len(counts), shots, dtype=np.int64)
        remaining = counts - query
        beta = rng.uniform()
        contributions = np.minimum(self.max_support_size_contrib_per_class, remaining)
        budget = int(min(np.floor(beta * contributions + 1).sum(), self.max_support_set_size))
        weights = counts * np.exp(rng.uniform(self.min_log_weight, self.max_log_weight, size=len(counts)))
        desired = np.floor(weights / weights.sum() * (budget - len(counts))).astype(np.int64) + 1
        return np.minimum(desired, remaining)

    def sample(self) -> EpisodeDescription:
        class_ids = self._sample_classes()
        counts = np.array([self.counts[int(c)] for c in class_ids], dtype=np.int64)
        query = self._num_query(counts)
        shots = self._shots(counts, query)
        support, queries = [], []
        for count, n_support in zip(counts, shots):
            picked = self.rng.choice(count, size=int(n_support) + query, replace=False)
            support.append(np.sort(picked[:n_support]))
            queries.append(np.sort(picked[n_support:]))
        return EpisodeDescription(class_ids, support, queries)

    def __iter__(self):
        while True:
            yield self.sample()
