from setuptools import find_packages, setup

setup(
    name="sheetrun",
    version="0.1.0",
    description="Spreadsheet-driven experiment runner, with ensemble and distribution-shift research tasks",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["runner", "runner.*", "tasks", "tasks.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "timm>=0.9",
        "h5py>=3.8",
        "numpy>=1.24",
        "pandas>=2.0",
        "gspread>=6.0",
        "filelock>=3.12",
        "psutil>=5.9",
        "PyYAML>=6.0",
        "rich>=13.0",
        "scikit-learn>=1.2",
        "scipy>=1.9",                # tasks/robustness/fit.py (also what scikit-learn installs)
        "matplotlib>=3.5",
        "tqdm>=4.60",
    ],
    extras_require={
        # CLIP's text tower, for zero-shot heads (tasks/robustness/zero_shot_head.py); the tests use it too
        "clip": ["open_clip_torch>=2.20"],
        "test": ["pytest>=7", "pytest-timeout>=2.1", "hypothesis>=6", "open_clip_torch>=2.20"],
    },
    entry_points={"console_scripts": ["sheetrun=runner.cli:main"]},
)
