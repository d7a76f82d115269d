#!/usr/bin/env bash
# Build every libFuzzer target with clang (ASan+UBSan) and run each for a
# bounded time from its seed corpus. FUZZ_SECONDS (default 60) per target.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${FUZZ_SECONDS:-60}
BUILD=${FUZZ_BUILD:-build-fuzz}
cmake -S . -B "$BUILD" -DCMAKE_C_COMPILER=clang -DEMBER_FUZZ=ON >/dev/null
targets=()
for f in fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]}"
status=0
for t in "${targets[@]}"; do
	seeds="fuzz/corpus/$t"
	work="$BUILD/corpus/$t"
	mkdir -p "$work"
	[ -d "$seeds" ] && cp -n "$seeds"/* "$work"/ 2>/dev/null || true
	# The kernel loaders also start from the real guest ELFs.
	if [ "$t" = fuzz_kernel_loader ]; then
		cmake --build "$BUILD" --target guests >/dev/null
		cp -n "$BUILD"/guests/*.elf "$work"/ 2>/dev/null || true
	fi
	echo "fuzz: $t for ${SECS}s"
	if ! "$BUILD/fuzz/$t" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-artifact_prefix="$BUILD/$t-" -print_final_stats=1 "$work" >"$BUILD/$t.log" 2>&1; then
		echo "fuzz: $t FAILED (see $BUILD/$t.log)"; tail -40 "$BUILD/$t.log"; status=1
	else
		grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$BUILD/$t.log" | sed "s/^/fuzz: $t: /"
	fi
done
exit $status
