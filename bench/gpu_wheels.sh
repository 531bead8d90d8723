#!/usr/bin/env bash
# bench/gpu_check.py on a GPU node whose own Python stack is older than the project's floors and
# that has no network (say Python 3.12, torch 2.11, transformers 5.17, accelerate 1.15, no vLLM,
# no Snakemake): the node keeps its torch, accelerate and numpy; the rest of what the check
# imports (transformers, peft, pyrate-limiter and what they require) comes as wheels pinned by
# requirements/lock.txt, fetched where pip reaches PyPI and installed on the node from the folder.
#
#   bench/gpu_wheels.sh fetch              # where pip works: the wheels into .gpu-wheels/ (~35 MB)
#   bench/gpu_wheels.sh run [check args]   # on the node, from the repository (copied with .gpu-wheels/):
#                                          # installs them without network, runs bench/gpu_check.py
#
# The node's interpreter: PYTHON (default python3). Most wheels are pure Python; tokenizers,
# safetensors, regex, pyyaml, pydantic-core and hf-xet are compiled, so `fetch` takes them for
# the node's CPython and platform: GPU_WHEELS_PYTHON (default 3.12) and GPU_WHEELS_ARCH
# (default x86_64; aarch64 for a Grace node). GPU_WHEELS_DIR moves the folder.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=${GPU_WHEELS_DIR:-$ROOT/.gpu-wheels}
PYTHON=${PYTHON:-python3}
NODE_PYTHON=${GPU_WHEELS_PYTHON:-3.12}
ARCH=${GPU_WHEELS_ARCH:-x86_64}
LOCK=$ROOT/requirements/lock.txt

# what bench/gpu_check.py imports beyond the node's torch, accelerate, numpy and psutil, with
# everything they require (the lock's closure of transformers, peft, pyrate-limiter and dill)
PACKAGES="transformers peft pyrate-limiter dill huggingface-hub tokenizers safetensors regex pyyaml hf-xet
  packaging tqdm typing-extensions filelock fsspec click typer rich pygments markdown-it-py mdurl shellingham
  annotated-doc httpx2 httpcore2 h11 anyio idna truststore pydantic pydantic-core annotated-types typing-inspection"

pins() {  # name==version of each package, as requirements/lock.txt pins it
  for name in $PACKAGES; do
    pin=$(grep -i -m1 -E "^${name}==[^ ]+" "$LOCK" | cut -d' ' -f1) ||
      { echo "gpu_wheels: $name is not pinned in $LOCK" >&2; exit 1; }
    echo "$pin"
  done
}

PINS=$(pins)  # stops here, by name, if the lock lacks one

case "${1:-}" in
fetch)
  mkdir -p "$DIR"
  nodot=${NODE_PYTHON/./}
  # pure-Python wheels fit any node; compiled ones the node's CPython and platform
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$DIR" \
    --python-version "$NODE_PYTHON" --implementation cp --abi "cp$nodot" --abi abi3 --abi none \
    --platform "manylinux_2_28_$ARCH" --platform "manylinux_2_17_$ARCH" --platform "manylinux2014_$ARCH" $PINS
  echo "gpu_wheels: $(ls "$DIR"/*.whl | wc -l) wheels, $(du -sh "$DIR" | cut -f1) in $DIR"
  ;;
run)
  shift
  version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  SITE=$DIR/site-$version
  if [ ! -e "$SITE/.complete" ]; then
    rm -rf "$SITE"
    # --no-deps: the node's torch, accelerate and numpy stay; --no-index: nothing from the network
    "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$DIR" --target "$SITE" $PINS
    touch "$SITE/.complete"
  fi
  cd "$ROOT"
  # this checkout's alpacare, then the wheels, in front of the node's own packages
  PYTHONPATH="$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" bench/gpu_check.py "$@"
  ;;
*)
  echo "usage: bench/gpu_wheels.sh fetch | run [bench/gpu_check.py arguments]" >&2
  exit 2
  ;;
esac
