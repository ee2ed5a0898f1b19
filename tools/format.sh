#!/usr/bin/env bash
# Formats every C++ file in the repository with clang-format (.clang-format), or, with
# --check (CI), lists the files that differ from it and fails.
set -euo pipefail
cd "$(dirname "$0")/.."
# Tracked files and new ones not yet added (not ignored): a new file is formatted before its
# first commit.
mapfile -t files < <(git ls-files --cached --others --exclude-standard '*.cpp' '*.hpp')
if [ "${1:-}" != "--check" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" > /dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'format: %s differs from .clang-format (tools/format.sh rewrites it)\n' "${bad[@]}"
  exit 1
fi
echo "format: all ${#files[@]} files match .clang-format"
