#!/usr/bin/env bash
# Builds the serving_check program against the TensorFlow C++ libraries
# shipped in a Python environment's tensorflow wheel.
#
# Usage: build_serving_check.sh OUT_DIR [--force]
#   OUT_DIR  where the binary goes (rq_keras.serving.cpp_check passes one directory
#            per TensorFlow install, so two stacks never share a binary)
#   PYTHON   interpreter whose tensorflow to build against (default: python3)
#
# The build is skipped when OUT_DIR/serving_check is newer than serving_check.cc
# and this script and the TensorFlow library directory it links to (recorded
# in OUT_DIR/serving_check.libdir, a resolved path) still holds the library;
# --force rebuilds anyway. Prints the binary's path on success;
# on failure prints the compiler's output to stderr and exits nonzero.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source_file="$here/serving_check.cc"
out_dir=""
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -*) echo "build_serving_check.sh: unknown option '$arg'" >&2; exit 2 ;;
    *) [[ -z "$out_dir" ]] || { echo "build_serving_check.sh: one OUT_DIR only" >&2; exit 2; }
       out_dir="$arg" ;;
  esac
done
if [[ -z "$out_dir" ]]; then
  echo "usage: build_serving_check.sh OUT_DIR [--force]" >&2
  exit 2
fi
binary="$out_dir/serving_check"
libdir_file="$binary.libdir"

fresh() {
  [[ -x "$binary" && "$binary" -nt "$source_file" && "$binary" -nt "${BASH_SOURCE[0]}" \
     && -f "$libdir_file" && -f "$(cat "$libdir_file")/libtensorflow_framework.so.2" ]]
}
if [[ $force -eq 0 ]] && fresh; then
  echo "$binary"
  exit 0
fi

# One build at a time (parallel test workers all ask for the binary): wait for
# a build under way, then take its result if it is fresh.
mkdir -p "$out_dir"
exec 9>"$out_dir/.build.lock"
flock 9
if [[ $force -eq 0 ]] && fresh; then
  echo "$binary"
  exit 0
fi

python="${PYTHON:-python3}"
# One interpreter start for both flag sets: importing tensorflow takes seconds.
# The library directory is resolved: a binary built through a symlinked
# environment (a git worktree's .venv) must not point at the link, which may go.
# TF_CPP_MIN_LOG_LEVEL keeps TensorFlow's import-time warnings off our output.
if ! flags="$(TF_CPP_MIN_LOG_LEVEL=3 "$python" -c '
import tensorflow as tf
print(" ".join(tf.sysconfig.get_compile_flags()))
print(" ".join(tf.sysconfig.get_link_flags()))
import os
print(os.path.realpath(tf.sysconfig.get_lib()))
')"; then
  echo "build_serving_check.sh: could not read TensorFlow build flags with $python" >&2
  exit 1
fi
compile_flags="$(sed -n 1p <<<"$flags")"
link_flags="$(sed -n 2p <<<"$flags")"
tf_lib="$(sed -n 3p <<<"$flags")"

if [[ ! -f "$tf_lib/libtensorflow_cc.so.2" ]]; then
  echo "build_serving_check.sh: $tf_lib/libtensorflow_cc.so.2 not found; the tensorflow wheel must ship the C++ library" >&2
  exit 1
fi

mkdir -p "$out_dir"
# Compile to a temporary name so an interrupted or failed build never leaves a
# binary that the freshness check above would accept.
tmp_binary="$binary.tmp.$$"
trap 'rm -f "$tmp_binary"' EXIT
# compile_flags carries -D_GLIBCXX_USE_CXX11_ABI and -std; they must match the
# wheel, or std::string-taking symbols such as LoadSavedModel fail to link.
# Every symbol the program calls resolves in libtensorflow_framework, so with
# the toolchain's default --as-needed the linker would drop libtensorflow_cc;
# but that library's static initializers register the DirectSession factory
# and the op kernels, without which LoadSavedModel fails with "No session
# factory registered". --no-as-needed keeps it.
# shellcheck disable=SC2086  # the flag strings are intentionally word-split
if ! log="$(g++ -O2 -std=c++17 $compile_flags "$source_file" -o "$tmp_binary" \
    $link_flags "-L$tf_lib" -Wl,--no-as-needed -l:libtensorflow_cc.so.2 -Wl,--as-needed \
    "-Wl,-rpath,$tf_lib" 2>&1)"; then
  echo "$log" >&2
  echo "build_serving_check.sh: compiling $source_file failed" >&2
  exit 1
fi
mv "$tmp_binary" "$binary"
echo "$tf_lib" > "$libdir_file"
echo "$binary"
