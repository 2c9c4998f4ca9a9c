"""lite_tf: memory-efficient meta-learning (LITE) for few-shot image classification in Keras 3."""
from lite_tf.episode import EPISODE_KEYS, episode_signature, validate_episode
from lite_tf.learner import Learner
from lite_tf.lite import LiteConfig, SupportMapper, chunked_map
from lite_tf.model import EpisodicModel
from lite_tf.registry import (get_backbone, get_learner, list_backbones, list_learners, register_backbone,
                              register_learner)

__version__ = "0.1.0"
