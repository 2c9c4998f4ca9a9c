"""Writes a small ORBIT-format folder of generated frames (for tests, demos and benchmarks).

  python -m tools.make_orbit_demo --output_dir=demo_data/orbit --frame_size=84

Layout and content: lite_tf/data/orbit/synthetic.py (clean videos: object centred on a plain
background; clutter videos: smaller object among distractors on a noisy background).
"""
from __future__ import annotations

from absl import flags

from lite_tf import cli

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("output_dir", "demo_data/orbit", "Folder to write train/, validation/, test/ into.")
    flags.DEFINE_integer("frame_size", 84, "Frame size in pixels (ORBIT ships 84 and 224).")
    flags.DEFINE_integer("train_users", 4, "Users in the train split.")
    flags.DEFINE_integer("validation_users", 2, "Users in the validation split.")
    flags.DEFINE_integer("test_users", 2, "Users in the test split.")
    flags.DEFINE_integer("objects_per_user", 4, "Objects per user.")
    flags.DEFINE_integer("clean_videos", 3, "Clean videos per object.")
    flags.DEFINE_integer("clutter_videos", 2, "Clutter videos per object.")
    flags.DEFINE_integer("frames_per_video", 24, "Frames per video.")
    flags.DEFINE_enum("image_format", "jpg", ["jpg", "png"], "Frame file format.")
    flags.DEFINE_bool("annotations", False, "Also write per-frame annotations in the official layout "
                      "(<output_dir>/annotations/<split>/<video>.json; the challenge protocol filters by them).")
    flags.DEFINE_integer("seed", 0, "Random seed.")


def main(argv) -> int:
    cli.no_arguments(argv)
    from lite_tf.data.orbit.synthetic import make_orbit_folder

    users = {"train": FLAGS.train_users, "validation": FLAGS.validation_users, "test": FLAGS.test_users}
    make_orbit_folder(FLAGS.output_dir, users={k: v for k, v in users.items() if v > 0},
                      objects_per_user=FLAGS.objects_per_user, clean_videos=FLAGS.clean_videos,
                      clutter_videos=FLAGS.clutter_videos, frames_per_video=FLAGS.frames_per_video,
                      frame_size=FLAGS.frame_size, seed=FLAGS.seed, image_format=FLAGS.image_format,
                      annotations=FLAGS.annotations)
    frames = sum(users.values()) * FLAGS.objects_per_user * (FLAGS.clean_videos + FLAGS.clutter_videos) \
        * FLAGS.frames_per_video
    print(f"Wrote {frames} frames of {FLAGS.frame_size} px to {FLAGS.output_dir}")
    return 0


def run():
    """Console-script entry point."""
    cli.run(define_flags, main)


if __name__ == "__main__":
    run()
