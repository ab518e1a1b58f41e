#!/usr/bin/env bash
# scripts/test.sh — the whole ustack test suite, from a fresh machine.
#
#   sudo ./scripts/test.sh            # install what is missing, build, run everything
#   sudo ./scripts/test.sh -- ARGS    # extra arguments for `cargo test` (e.g. a test name filter)
#
# As root it first installs missing tools with apt-get (non-interactive):
# iproute2, iputils-ping, curl, tshark, netcat-openbsd, python3, wrk, and a C
# toolchain; and Rust through rustup if no cargo is found. Then it runs
# `cargo test --release`: unit tests, simulated-network tests, and the
# end-to-end tests, which create (and remove) their own network namespaces
# named u<pid>-<n> with a TUN device each. Nothing else on the host changes.
#
# Without root the e2e tests print SKIPPED; with USTACK_REQUIRE_E2E=1 (CI) a
# skip is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_ARGS=()
if [ "${1:-}" = "--" ]; then shift; CARGO_ARGS=("$@"); fi

# Keep in sync with .ci/run.
APT_PACKAGES=(iproute2 iputils-ping curl tshark netcat-openbsd python3 python3-pip wrk apache2-utils chromium nftables build-essential pkg-config ca-certificates)

install_packages() {
    command -v apt-get >/dev/null || { echo "test.sh: no apt-get; install by hand: ${APT_PACKAGES[*]}" >&2; return; }
    local missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return
    echo "test.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture: answer no, without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Under sudo, build as the invoking user so target/ stays theirs, with their toolchain.
AS_USER=()
if [ "$(id -u)" -eq 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    USER_HOME=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    AS_USER=(sudo -u "$SUDO_USER" -H)
    if ! command -v cargo >/dev/null && [ -x "$USER_HOME/.cargo/bin/cargo" ]; then
        export PATH="$USER_HOME/.cargo/bin:$PATH"
        export RUSTUP_HOME="${RUSTUP_HOME:-$USER_HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$USER_HOME/.cargo}"
    fi
fi

if [ "$(id -u)" -eq 0 ]; then
    install_packages
else
    echo "test.sh: not root: skipping package installation; the e2e tests will be SKIPPED (run: sudo $0)" >&2
fi

if ! command -v cargo >/dev/null; then
    [ -x "$HOME/.cargo/bin/cargo" ] || {
        echo "test.sh: installing Rust (rustup, minimal profile)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    }
    export PATH="$HOME/.cargo/bin:$PATH"
fi

if [ "$(id -u)" -eq 0 ]; then
    # Python clients used by the end-to-end tests.
    python3 -c 'import websockets' 2>/dev/null || python3 -m pip install -q websockets 2>/dev/null \
        || python3 -m pip install -q --break-system-packages websockets
    # Autobahn|Testsuite (Python 2.7 in a virtualenv under ~/.cache/ustack), so that
    # its installation is not counted against the conformance test's time.
    ./scripts/autobahn.sh --install-only || echo "test.sh: Autobahn could not be installed (the test will say why)" >&2
fi

echo "test.sh: building (cargo test --release --no-run)"
"${AS_USER[@]}" env PATH="$PATH" ${RUSTUP_HOME:+RUSTUP_HOME=$RUSTUP_HOME} ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} \
    cargo test --release --no-run

echo "test.sh: running the tests"
rc=0
# Fuzz smoke, 30 s per target (packet input of a whole stack, HTTP parser,
# WebSocket decoder, permessage-deflate); a finding fails the run. With
# libFuzzer through cargo-fuzz (coverage-guided; installed from crates.io,
# run on the stable toolchain with RUSTC_BOOTSTRAP=1 and no sanitizer), on a
# scratch copy of the committed corpus; if cargo-fuzz cannot be installed,
# the stable mutational driver instead. Long runs: docs/reliability.md.
fuzz_smoke() {
    local home="${CARGO_HOME:-$HOME/.cargo}"
    if ! command -v cargo-fuzz >/dev/null && [ ! -x "$home/bin/cargo-fuzz" ]; then
        echo "test.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
        "${AS_USER[@]}" env PATH="$PATH" ${RUSTUP_HOME:+RUSTUP_HOME=$RUSTUP_HOME} ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} \
            cargo install --quiet cargo-fuzz --locked || return 2
    fi
    local scratch t
    scratch=$(mktemp -d /tmp/ustack-fuzz.XXXXXX)
    chmod 777 "$scratch"
    for t in packet http ws deflate; do
        mkdir -p "$scratch/$t" "$scratch/artifacts-$t"
        cp fuzz/corpus/$t/* "$scratch/$t/"
        chmod -R a+rwX "$scratch"
        echo "test.sh: fuzz smoke (libFuzzer): ${t}_input, 30 s"
        "${AS_USER[@]}" env PATH="$home/bin:$PATH" ${RUSTUP_HOME:+RUSTUP_HOME=$RUSTUP_HOME} ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} RUSTC_BOOTSTRAP=1 \
            cargo fuzz run -s none "${t}_input" "$scratch/$t" -- \
            -max_total_time=30 -timeout=10 -artifact_prefix="$scratch/artifacts-$t/" >"$scratch/$t.log" 2>&1 || {
            echo "test.sh: fuzz smoke: ${t}_input FAILED (log and input kept in $scratch):"
            grep -E -A3 "panicked|ERROR|SUMMARY" "$scratch/$t.log" | head -20
            return 1
        }
        grep -E "^#[0-9]+[[:space:]]+DONE" "$scratch/$t.log" | tail -1 || true
    done
    rm -rf "$scratch"
}
fuzz_rc=0
fuzz_smoke || fuzz_rc=$?
if [ "$fuzz_rc" = 2 ]; then
    echo "test.sh: cargo-fuzz not available: stable fuzz driver instead (30 s per target)"
    "${AS_USER[@]}" env PATH="$PATH" ${RUSTUP_HOME:+RUSTUP_HOME=$RUSTUP_HOME} ${CARGO_HOME:+CARGO_HOME=$CARGO_HOME} \
        cargo run --release --quiet --example fuzz -- all --seconds 120 --seed 1 || rc=$?
elif [ "$fuzz_rc" != 0 ]; then
    rc=1
fi
cargo test --release "${CARGO_ARGS[@]}" || rc=$?
# cargo may have written a few files as root: give target/ back to the user.
[ ${#AS_USER[@]} -gt 0 ] && chown -R "$SUDO_USER:" target 2>/dev/null || true

# WebSocket conformance (Autobahn sections 1-11 over the TUN device) runs as the
# test e2e_ws::autobahn_quick_over_tun; the full suite: sudo scripts/autobahn-e2e.sh
exit "$rc"
