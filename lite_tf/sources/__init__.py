"""The built-in data sources (gin ``sources.<name>``); importing this package registers them.

They are also declared in setup.py's ``lite_tf.sources`` entry-point group, the way third-party
sources are added.
"""
from lite_tf.sources import metadataset, orbit  # noqa: F401  (registers sources.metadataset, sources.orbit)
