"""ORBIT aggregation as the official code does it.

- Every drawn task is scored, repeated or not: the official test loops run ``--test_tasks_per_user``
  (tag) / ``--num_test_tasks`` (HEAD) tasks per user and ``TestEvaluator.append`` adds every target
  video of each; ``get_mean_stats`` averages over all those videos (per video) and over users' means
  (per user). lite_tf reports that as the headline and each distinct task once as an extra.
- A user left with one valid object gets 1-way evaluation tasks: at the tag every user folder is kept
  (``load_all_users``) and the test way is 'max'; at HEAD ``__load_all_users`` keeps a user with
  ``len(obj_ids) > 0`` and ``compute_way`` returns min(objects, cap) for 'max'.
"""
import collections
import os
import shutil

import numpy as np
import pytest

from lite_tf.data.orbit.annotations import Annotations
from lite_tf.data.orbit.index import load_split
from lite_tf.data.orbit.protocol import CHALLENGE, NEURIPS21
from lite_tf.data.orbit.synthetic import make_orbit_folder
from lite_tf.data.orbit.tasks import TrainTaskSampler, eval_tasks
from lite_tf.eval.orbit_evaluation import aggregate_row
from lite_tf.eval.orbit_metrics import VideoResult


def videos_at(user, task, accuracies, frames=20):
    """One VideoResult per accuracy (label 0; the first round(a * frames) frames right)."""
    results = []
    for index, accuracy in enumerate(accuracies):
        right = int(round(accuracy * frames))
        results.append(VideoResult(user, task, f"object{index}", 0, f"{user}/video{index}", "clean",
                                   [0] * right + [1] * (frames - right)))
    return results


def test_repeated_tasks_weigh_as_in_the_official_code():
    """The issue's two users: A draws 50 identical tasks at ~90 %, B 50 distinct tasks at ~40 %."""
    a = [0.85, 0.95]                                   # A's two videos, the same in every task
    b = [[0.40 + 0.01 * ((t % 5) - 2), 0.40 - 0.01 * ((t % 5) - 2)] for t in range(50)]  # B's tasks differ
    videos, distinct = [], []
    for task in range(50):
        videos += videos_at("A", task, a)
        videos += videos_at("B", task, b[task])
        distinct += videos_at("B", task, b[task])
        if task == 0:
            distinct += videos_at("A", task, a)
    row = aggregate_row("CLE-VE", videos, [(None, None)] * 100, distinct)
    a_frames = [round(x * 20) / 20 for x in a]
    b_frames = [round(x * 20) / 20 for t in b for x in t]
    official = np.mean(a_frames * 50 + b_frames)        # get_mean_stats: every appended video of every task
    assert row["accuracy"] == pytest.approx(official) and row["videos"] == 200
    assert official == pytest.approx(0.65)
    assert row["per_user"]["frame_accuracy"]["mean"] == pytest.approx((np.mean(a_frames) + np.mean(b_frames)) / 2)
    once = row["identical_tasks_once"]
    assert (once["tasks"], once["videos"]) == (51, 102)
    assert once["per_video"]["frame_accuracy"]["mean"] == pytest.approx(np.mean(a_frames + b_frames))  # ~0.41
    assert once["per_video"]["frame_accuracy"]["mean"] < 0.42


@pytest.mark.parametrize("protocol", [NEURIPS21, CHALLENGE], ids=["neurips21", "challenge"])
def test_user_with_one_valid_object_gets_1_way_tasks(tmp_path, protocol):
    root = make_orbit_folder(str(tmp_path / "orbit"), users={"test": 2}, objects_per_user=2, clean_videos=2,
                             clutter_videos=1, frames_per_video=80, frame_size=8, annotations=True,
                             not_present_rate=0.1, seed=2)
    user = sorted(os.listdir(os.path.join(root, "test")))[0]
    victim = sorted(os.listdir(os.path.join(root, "test", user)))[1]
    shutil.rmtree(os.path.join(root, "test", user, victim))  # the first user keeps one object
    index = load_split(root, "test", cache_dir=str(tmp_path / "cache"))
    assert index.problems.get("users_with_one_object") == 1
    skipped = collections.Counter()
    tasks = list(eval_tasks(index, protocol, tasks_per_user=2, skipped=skipped, annotations=Annotations(root, "test")))
    one = [t for t in tasks if t.user == user]
    assert one and all(t.way == 1 and len(t.object_names) == 1 for t in one)
    assert all(target.label == 0 for t in one for target in t.targets)
    assert {t.target_type for t in one} == {"clean", "clutter"}
    assert skipped["clean_users_with_one_object_given_1_way_tasks"] == 1
    # training needs two objects (the official random.choice(range(2, objects + 1)) has nothing to draw)
    sampler = TrainTaskSampler(index, NEURIPS21, target_video_type="clutter")
    assert user not in sampler.users
