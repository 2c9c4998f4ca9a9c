"""The built-in data sources, one module each (gin ``sources.<name>``).

metadataset (Meta-Dataset records), metadataset_tfds and metadataset_v2 (Google's TFDS build; the
VTAB+MD protocol's MD-v2), orbit (ORBIT videos), vtab (the VTAB-v2 tasks from TFDS). They load
through setup.py's ``lite_tf.sources`` entry points, exactly as a third-party source does; the
reading itself lives in lite_tf/data/.
"""
