"""xpnet against PyTorch, side by side in one run: ``python -m benchmarks`` (see benchmarks/README.md)."""

TORCH_VERSION = "2.13.0"
TORCH_INSTALL = f"pip install torch=={TORCH_VERSION} --index-url https://download.pytorch.org/whl/cpu"
