# Convenience wrapper around CMake. `make demo` and `make test` do all set-up
# on a fresh Debian 12 machine.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= $(shell nproc)

.PHONY: all deps build demo test test-asan test-clang fuzz bench clean

all: build

deps:
	./scripts/deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: deps build
	./$(BUILD)/ember run

test: deps build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# Unit and integration tests under AddressSanitizer + UBSan.
test-asan: deps
	cmake -S . -B build-asan -DEMBER_SANITIZE=ON
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j$(JOBS) -LE slow

# The same build under clang, warnings as errors.
test-clang: deps
	cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang
	cmake --build build-clang -j$(JOBS)
	cd build-clang && ctest --output-on-failure -j$(JOBS) -L unit

fuzz: deps
	./scripts/fuzz.sh

clean:
	rm -rf build build-asan build-clang build-fuzz
