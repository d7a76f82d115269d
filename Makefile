# Convenience wrapper around CMake. `make demo` and `make test` do all set-up
# on a fresh Debian 12 machine.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build demo test test-nested test-asan test-tsan test-clang fuzz bench clean

all: build

deps:
	./scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

# Where /dev/kvm is missing (or is kvm-pvm), the demo boots inside the
# nested-KVM harness, and so do the integration tests.
demo: deps build
	@if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then ./$(BUILD)/ember run; else \
	  echo "demo: no /dev/kvm on this machine; booting the demo VM inside the nested-KVM harness (scripts/nested-kvm.sh)"; \
	  EMBER_NESTED_QUIET=1 ./scripts/nested-kvm.sh --timeout 300 ./$(BUILD)/ember run; fi

# Unit tests here; every integration test (freestanding guests and the
# Linux-guest suite) directly on VMX/SVM KVM or in the nested-KVM harness.
test: deps build
	cd $(BUILD) && ctest -L unit --output-on-failure -j$(JOBS)
	./scripts/integration.sh $(BUILD)

test-nested: deps build
	./scripts/integration.sh $(BUILD) --nested

# Unit and integration tests under AddressSanitizer + UBSan.
test-asan: deps
	cmake -S . -B build-asan -DEMBER_SANITIZE=ON
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS) -L unit
	ASAN_OPTIONS=detect_leaks=1 ./scripts/integration.sh build-asan -LE "slow|linux"

# Unit tests (with the multi-threaded stress tests) under ThreadSanitizer.
test-tsan: deps
	cmake -S . -B build-tsan -DEMBER_TSAN=ON -DCMAKE_C_COMPILER=clang
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ctest --output-on-failure -j$(JOBS) -L unit
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./scripts/integration.sh build-tsan -LE "slow|linux"

# The same build under clang, warnings as errors.
test-clang: deps
	cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang
	cmake --build build-clang -j$(JOBS)
	cd build-clang && ctest --output-on-failure -j$(JOBS) -L unit

fuzz: deps
	./scripts/fuzz.sh

clean:
	rm -rf build build-asan build-tsan build-clang build-fuzz
