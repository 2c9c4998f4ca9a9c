"""Installs lite_tf: the library, its built-in learners (source folder learners/, installed as
lite_tf.learners) and its launchers (source folder tools/, installed as lite_tf.tools), so nothing with a
generic name lands at the top of site-packages."""
from setuptools import find_packages, setup

setup(
    name="lite_tf",
    version="0.1.0",
    description="Memory-efficient meta-learning (LITE) for few-shot classification on large images, in TensorFlow/Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["lite_tf", "lite_tf.*"]) + ["lite_tf.learners", "lite_tf.tools"],
    package_dir={"lite_tf.learners": "learners", "lite_tf.tools": "tools"},
    include_package_data=True,
    package_data={"": ["*.gin"]},
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0",
        "tensorflow-datasets>=4.9",
        # tensorflow-datasets imports it on Python 3.11 without declaring it.
        "importlib_resources",
        "gin-config>=0.5",
        "absl-py>=1.0",
        "tensorboard>=2.16",
        "numpy>=1.23",
        "pillow>=9.0",
        "psutil>=5.9",
        "tqdm>=4.0",
    ],
    extras_require={
        # ai-edge-litert: the LiteRT interpreter the export tests run .tflite files in (a 22 MB wheel).
        "test": ["pytest>=7.0", "pytest-randomly>=3.12", "ai-edge-litert>=2.0"],
        # Only to run exported .tflite recognisers (lite_tf.export.runner); TF's tf.lite.Interpreter is deprecated.
        "litert": ["ai-edge-litert>=2.0"],
        # Only to read PyTorch checkpoints (lite_tf_import_weights); .npz state dicts need no torch.
        "torch": ["torch>=2.0"],
        # Only for the studies' PNG plots (tools/gradient_study.py, tools/training_study.py --plot).
        "plot": ["matplotlib"],
    },
    entry_points={
        # Third-party packages add learners, backbones or data sources by declaring modules in these groups;
        # importing the module registers its plugins (see lite_tf/registry.py).
        "lite_tf.learners": [
            "protonets = lite_tf.learners.protonets",
            "simple_cnaps = lite_tf.learners.simple_cnaps",
            "cnaps = lite_tf.learners.cnaps",
            "finetuner = lite_tf.learners.finetuner",
        ],
        "lite_tf.backbones": [],
        "lite_tf.evaluators": [],
        "lite_tf.sources": [
            "metadataset = lite_tf.sources.metadataset",
            "orbit = lite_tf.sources.orbit",
            "vtab = lite_tf.sources.vtab",
            "metadataset_tfds = lite_tf.sources.metadataset_tfds",
            "metadataset_v2 = lite_tf.sources.metadataset_tfds",
        ],
        "console_scripts": [
            "lite_tf_train = lite_tf.tools.train:run",
            "lite_tf_evaluate = lite_tf.tools.evaluate:run",
            "lite_tf_quickstart = lite_tf.tools.quickstart:run",
            "lite_tf_make_demo_data = lite_tf.tools.make_demo_data:run",
            "lite_tf_convert = lite_tf.tools.convert:run",
            "lite_tf_orbit_evaluate = lite_tf.tools.orbit_evaluate:run",
            "lite_tf_make_orbit_demo = lite_tf.tools.make_orbit_demo:run",
            "lite_tf_benchmark = lite_tf.tools.benchmark:run",
            "lite_tf_evaluate_vtab_md = lite_tf.tools.evaluate_vtab_md:run",
            "lite_tf_import_weights = lite_tf.tools.import_weights:run",
            "lite_tf_prepare_lite_data = lite_tf.tools.prepare_lite_data:run",
            "lite_tf_gradient_study = lite_tf.tools.gradient_study:run",
            "lite_tf_training_study = lite_tf.tools.training_study:run",
            "lite_tf_plan = lite_tf.tools.plan:run",
            "lite_tf_export = lite_tf.tools.export:run",
        ],
    },
)
