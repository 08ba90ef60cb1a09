"""Packaging for detnet-trt.

Install torch first (``pip install torch==2.13.0`` on x86 CPU machines, the JetPack wheel on a
Jetson) so that pip does not pull a multi-GB CUDA build while resolving ``torch`` below.

OpenCV: on x86 and generic aarch64 the ``opencv-python`` wheel is declared. On a Jetson, JetPack's
system OpenCV (built with GStreamer, needed for CSI cameras and RTSP over GStreamer) must not be
shadowed by PyPI's wheel, so on aarch64 OpenCV is not a hard requirement: use JetPack's
``python3-opencv`` (venv created with ``--system-site-packages``), or ``pip install
detnet-trt[opencv]`` on an aarch64 machine that has no system OpenCV.
"""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "detnet_trt" / "_version.py").read_text(), version)

OPENCV = "opencv-python>=4.7"

setup(
    name="detnet-trt",
    version=version["__version__"],
    description="DetNet detectors from PyTorch to TensorRT (FP16 / INT8) with a Python runtime",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["detnet_trt", "detnet_trt.*"]),
    package_data={"detnet_trt": ["py.typed", "assets/*"], "detnet_trt.export": ["*.txt"]},
    install_requires=[
        "numpy>=1.23",
        "torch>=2.1",
        "onnx>=1.14",
        "onnxruntime>=1.16",
        "onnxscript>=0.1",
        f"{OPENCV}; platform_machine != 'aarch64'",
        "tqdm>=4.60",
        "pycocotools>=2.0.6",
        "matplotlib>=3.6",
        "scipy>=1.10",  # the tracker's linear assignment (camera --track)
    ],
    extras_require={
        "opencv": [OPENCV],
        "tensorrt": ["tensorrt>=8.6", "pycuda>=2022.2", "onnx-graphsurgeon>=0.3.27"],
        "plugins": ["onnx-graphsurgeon>=0.3.27"],
        "mqtt": ["paho-mqtt>=2.0"],  # camera --mqtt
        "triton": ["nvidia-pytriton>=0.7", "tritonclient[http,grpc]>=2.40"],
        "dev": [
            "pytest>=7.4",
            "pytest-xdist>=3.5",  # make test: -n 2 --dist loadfile
            "hypothesis>=6.100",  # property-based tests (tests/*/test_*_props.py)
            # pinned: `make test` runs both with zero findings, and a new release may find new ones
            "mypy==2.4.1",
            "ruff==0.17.6",
            "onnx-graphsurgeon>=0.3.27",
            "nvidia-pytriton>=0.7",
            "tritonclient[http,grpc]>=2.40",
            "motmetrics>=1.4",  # ID switches / fragmentations of the tracker against ground truth
            "paho-mqtt>=2.0",
            "amqtt>=0.11",  # a real MQTT broker for the --mqtt tests where mosquitto is not installed
        ],
    },
    entry_points={"console_scripts": ["detnet-trt=detnet_trt.cli:main"]},
)
