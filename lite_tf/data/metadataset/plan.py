"""Episodes planned ahead: the NumPy samplers' descriptions of a block of episodes, as flat arrays.

The tf.data pipeline must run no Python while it is iterated (a Python generator in the runtime can
deadlock when an iterator is torn down: the destructor holds the GIL the generator thread waits
for). So the :class:`~lite_tf.data.metadataset.sampling.EpisodeSampler` s describe a block of
``count`` episodes when the pipeline is built (about 5,000 episodes/s), and the block is served
from tensors: for every image its class slot (``store.ClassTable``), record number and episode
label; per episode where its images start, its support size, way and source.

Beyond the block, episode ``n`` reuses the class structure (classes, shots, query size) of planned
episode ``n % count`` with fresh records: in repeat ``r = n // count`` every record number of a
class is rotated by a random offset of that class and repeat (stateless, from the seed). A rotated
uniform draw without replacement is again a uniform draw without replacement, so every episode
still follows the sampling rules and holds no image twice; only the class structures recur.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

import numpy as np

from lite_tf.data.metadataset import sampling

Planned = List[Tuple[int, sampling.EpisodeDescription]]  # (source, description) per episode


def sample_episodes(specs: Sequence, split, sampler_kwargs: dict, seed: int, count: int) -> Planned:
    """``count`` episodes; with several sources each episode's source is drawn uniformly."""
    seeds = np.random.SeedSequence(seed).spawn(len(specs) + 1)
    samplers = [sampling.EpisodeSampler(spec, split, seed=s, **sampler_kwargs) for spec, s in zip(specs, seeds)]
    pick = np.random.default_rng(seeds[-1])
    planned = []
    for _ in range(count):
        source = int(pick.integers(len(specs))) if len(specs) > 1 else 0
        planned.append((source, samplers[source].sample()))
    return planned


def drawn_classes(planned: Planned, num_sources: int) -> List[set]:
    """The class ids each source's planned episodes use."""
    drawn = [set() for _ in range(num_sources)]
    for source, description in planned:
        drawn[source].update(int(c) for c in description.class_ids)
    return drawn


@dataclasses.dataclass(frozen=True)
class EpisodePlan:
    """Flat arrays of planned episodes; images of an episode are its support (class by class),
    then its query (class by class)."""

    slots: np.ndarray  # [T] int32, class slot of every image
    records: np.ndarray  # [T] int32, record number within its class file
    labels: np.ndarray  # [T] int32, episode label (position of its class in the episode)
    starts: np.ndarray  # [count + 1] int64, where each episode's images begin (and the end)
    num_support: np.ndarray  # [count] int32
    way: np.ndarray  # [count] int32
    source: np.ndarray  # [count] int32

    @property
    def count(self) -> int:
        return len(self.way)

    @classmethod
    def build(cls, planned: Planned, table) -> "EpisodePlan":
        slots, record_ids, labels, sizes, num_support, way, source = [], [], [], [], [], [], []
        for src, description in planned:
            class_slots = [table.slot(src, c) for c in description.class_ids]
            for part in (description.support, description.query):
                for label, (slot, picked) in enumerate(zip(class_slots, part)):
                    slots.append(np.full(len(picked), slot, np.int32))
                    record_ids.append(np.asarray(picked, np.int32))
                    labels.append(np.full(len(picked), label, np.int32))
            sizes.append(description.num_support + description.num_query)
            num_support.append(description.num_support)
            way.append(description.way)
            source.append(src)
        return cls(np.concatenate(slots), np.concatenate(record_ids), np.concatenate(labels),
                   np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64), np.asarray(num_support, np.int32),
                   np.asarray(way, np.int32), np.asarray(source, np.int32))
