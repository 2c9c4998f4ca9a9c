"""ORBIT metrics and the 95% interval against hand-computed values."""
import numpy as np
import pytest

from lite_tf.eval.confidence import format_interval, mean_confidence_interval
from lite_tf.eval.orbit_metrics import (VideoResult, frame_accuracy, frames_to_recognition, summarize,
                                        video_accuracy, video_metrics)


def test_ordinary_video():
    predictions = [0, 1, 1, 2, 1]
    assert frame_accuracy(predictions, 1) == pytest.approx(0.6)
    assert video_accuracy(predictions, 1) == 1.0
    assert frames_to_recognition(predictions, 1) == pytest.approx(0.2)
    assert video_accuracy(predictions, 0) == 0.0
    assert frames_to_recognition(predictions, 2) == pytest.approx(0.6)


def test_tie_in_video_vote_goes_to_smallest_index():
    predictions = [2, 0, 2, 0]  # objects 0 and 2 each predicted twice
    assert video_accuracy(predictions, 0) == 1.0
    assert video_accuracy(predictions, 2) == 0.0
    assert frame_accuracy(predictions, 2) == 0.5
    assert frames_to_recognition(predictions, 0) == pytest.approx(0.25)
    assert frames_to_recognition(predictions, 2) == 0.0


def test_video_never_recognised():
    assert video_metrics([1, 1, 2], 0) == {"frame_accuracy": 0.0, "video_accuracy": 0.0,
                                           "frames_to_recognition": 1.0}


def test_one_frame_video():
    assert video_metrics([3], 3) == {"frame_accuracy": 1.0, "video_accuracy": 1.0, "frames_to_recognition": 0.0}
    assert video_metrics([3], 0) == {"frame_accuracy": 0.0, "video_accuracy": 0.0, "frames_to_recognition": 1.0}


@pytest.mark.parametrize("bad", [[], [[0, 1]], [0.5, 1.0], [-1, 0]])
def test_bad_predictions_raise(bad):
    with pytest.raises((ValueError, TypeError)):
        frame_accuracy(np.asarray(bad), 0)


def test_confidence_interval():
    mean, half = mean_confidence_interval([0.0, 1.0])
    assert mean == 0.5 and half == pytest.approx(1.96 * 0.5 / np.sqrt(2))
    values = np.array([0.2, 0.4, 0.9, 0.5])
    mean, half = mean_confidence_interval(values)
    assert half == pytest.approx(1.96 * np.std(values) / 2)
    assert mean_confidence_interval([0.7]) == (pytest.approx(0.7), 0.0)
    assert format_interval(0.5, 0.01) == "50.00 +- 1.00"
    with pytest.raises(ValueError, match="at least one"):
        mean_confidence_interval([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_confidence_interval([1.0, np.nan])


def test_summarize_per_video_and_per_user():
    videos = [VideoResult("A", 0, "cup", 0, "v1", "clean", [0, 0]),        # frame acc 1.0, FTR 0
              VideoResult("A", 1, "cup", 0, "v2", "clean", [1, 0]),        # 0.5, tie -> 0 wins: video 1, FTR .5
              VideoResult("B", 0, "key", 1, "v3", "clean", [0, 0, 0, 0])]  # 0.0, 0, FTR 1
    summary = summarize(videos)
    per_video, per_user = summary["per_video"], summary["per_user"]
    assert per_video["frame_accuracy"]["mean"] == pytest.approx(0.5)
    assert per_video["frame_accuracy"]["n"] == 3
    assert per_video["frame_accuracy"]["ci95"] == pytest.approx(1.96 * np.std([1, 0.5, 0]) / np.sqrt(3))
    assert per_video["video_accuracy"]["mean"] == pytest.approx(2 / 3)
    assert per_video["frames_to_recognition"]["mean"] == pytest.approx(0.5)
    # per user: A = mean(1.0, 0.5) = 0.75, B = 0.0
    assert per_user["frame_accuracy"]["mean"] == pytest.approx(0.375)
    assert per_user["frame_accuracy"]["n"] == 2
    assert per_user["frame_accuracy"]["ci95"] == pytest.approx(1.96 * 0.375 / np.sqrt(2))
    assert per_user["frames_to_recognition"]["mean"] == pytest.approx((0.25 + 1.0) / 2)
    with pytest.raises(ValueError):
        summarize([])
