#!/bin/bash
# The soak (tests/soak/soak.sh, `make soak`) in short: SOAK_CYCLES (12) pod
# cycles, which by the soak's cycle rule hold container, sandbox, bogus
# (cycle 5) and killed-QEMU (cycle 7) cycles, two long-lived pods execed
# into every cycle, then the leak report (JSON in
# <build>/soak/report-check.json, so the full run's report.json stays).
# Exits 77 when the machine lacks something, like the other integration tests.
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${UNISHIM_SOURCE_DIR:-$(cd "$dir/../.." && pwd)}
build=${UNISHIM_BUILD_DIR:-${BUILD:-build}}
[[ $build = /* ]] || build=$src/$build
export SOAK_CYCLES=${SOAK_CYCLES:-12}
export SOAK_REPORT=${SOAK_REPORT:-$build/soak/report-check.json}
exec bash "$dir/../soak/soak.sh"
