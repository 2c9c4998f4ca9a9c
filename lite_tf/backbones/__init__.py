"""Feature extractors, registered by name (lite_tf.registry.get_backbone)."""
from lite_tf.backbones import conv, efficientnet  # noqa: F401  (registers the backbones)
from lite_tf.backbones import film, film_efficientnet, resnet, set_encoder  # noqa: F401
