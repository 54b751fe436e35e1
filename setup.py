"""enas_face: ENAS neural architecture search for deep face recognition (TF2 / Keras 3)."""
from setuptools import find_packages, setup

ONNX = ["tf2onnx>=1.16", "onnx>=1.14", "onnxruntime>=1.17"]
RAY = ["ray>=2.9"]
# dlib's face recognition model as a distillation teacher: dlib-bin ships prebuilt wheels of
# dlib (20.0.1.post1 installs from PyPI next to numpy 2.4 on Python 3.11; no compiler).
DLIB = ["dlib-bin>=19.24"]

setup(
    name="enas_face",
    version="0.1.0",
    description="ENAS neural architecture search for deep face recognition (Zhu 2019), "
                "TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["enas_face", "enas_face.*"]),
    python_requires=">=3.10",
    install_requires=[
        # TensorFlow itself comes from an extra: tensorflow-cpu and tensorflow are different
        # distributions, and requiring one would pull it in even where the other is installed.
        "keras>=3.0",
        "absl-py>=1.0",
        "numpy>=1.23",
        "opencv-python-headless>=4.8",
        "scikit-learn>=1.2",
        "scipy>=1.9",  # Spearman correlation of learned frame quality (scikit-learn needs it too)
        "matplotlib>=3.6",
        "tensorboard>=2.16",  # tf.summary needs it; TF 2.21 no longer depends on it
        "Pillow>=9.1",  # decoding that reports truncated/corrupt files (cv2.imread does not)
        "mtcnn>=1.0,<2",  # MTCNN face detector + 5 landmarks; its weights ship in the wheel
        "tqdm>=4.60",
        # LiteRT interpreter for the TFLite exports (tf.lite.Interpreter is deprecated); no
        # TensorFlow inside. 2.3.0 resolved and tested next to TF 2.21 / numpy 2.4 / protobuf 7.
        "ai-edge-litert>=1.0",
    ],
    extras_require={
        "cpu": ["tensorflow-cpu>=2.16"],
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # --export_format=onnx: tf2onnx converts the SavedModel's function, onnxruntime checks
        # it (1.17.0 / 1.32.0 tested with TF 2.21, numpy 2.4, protobuf 7: no pins changed).
        "onnx": ONNX,
        # --trial_workers > 1 / --ray_address: multi-trial searches run their trials on Ray
        # (2.60.0 tested with TF 2.21 on Python 3.11).
        "ray": RAY,
        # --distill_from=<dlib's model folder> (tools/teacher_embeddings.py runs it on photos).
        "dlib": DLIB,
        # The ONNX export's, the Ray trial workers' and the dlib teacher's tests run too.
        # import-linter: the house's import contracts (.importlinter, tests/test_architecture.py).
        "test": ["pytest>=7", "import-linter>=2.1", *ONNX, *RAY, *DLIB],
    },
    entry_points={"console_scripts": ["enas-face=enas_face.main:entry_point"]},
)
