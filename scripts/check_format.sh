#!/usr/bin/env bash
# Fails when a tracked C++ or CUDA file differs from .clang-format, or when an include
# crosses the layers the wrong way (docs/architecture.md): kernels/ sees nothing above
# it, common/ and net/ see no engine/ or server/, engine/ sees no server/, and gateway/
# sees only net/ and common/. Prints every offender.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.cu' '*.cuh' | grep -v '^third_party/')
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  echo "== ${#bad[@]} files differ from .clang-format (fix: clang-format -i FILE):"
  printf '  %s\n' "${bad[@]}"
  status=1
else
  echo "== clang-format: ${#files[@]} files clean"
fi

# layer: the folders whose headers it must not include
check_layer() {
  local layer=$1 forbidden=$2
  local hits
  hits=$(git ls-files "$layer" | grep -E '\.(cc|h|cu|cuh)$' |
         xargs -r grep -nE "#include \"($forbidden)/" || true)
  if [[ -n $hits ]]; then
    echo "== $layer includes what it must not ($forbidden):"
    echo "$hits" | sed 's/^/  /'
    status=1
  fi
}
check_layer kernels 'engine|server|gateway|net|common'
check_layer common 'engine|server|gateway|net'
check_layer net 'engine|server|gateway'
check_layer engine 'server|gateway|net'
check_layer gateway 'engine|server'
[[ $status == 0 ]] && echo "== layers: every include points down"
exit $status
