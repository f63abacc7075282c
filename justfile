# bundle-init tasks. `just` lists them.

target := "x86_64-unknown-linux-musl"
aarch64 := "aarch64-unknown-linux-musl"
release := "target/" + target + "/release"
# No PIE: `file` then says "statically linked", and the loader has nothing to relocate.
# Dependencies' source paths are remapped: a release file must not depend on CARGO_HOME.
cargo_home := env_var_or_default("CARGO_HOME", home_directory() + "/.cargo")
remap := "\"--remap-path-prefix\",\"" + cargo_home + "=/cargo\""
static := "--config 'target." + target + ".rustflags=[\"-C\",\"relocation-model=static\"," + remap + "]'"
# The size-optimised builds: panics abort at once, so no unwind tables are needed (45 KiB).
# Both link with rust-lld, which folds identical functions (--icf=all: 1 KiB) and lays the
# file out tighter than GNU ld (9 KiB on x86_64); std's optimize_for_size picks its smaller
# implementations (4 KiB).
tiny_flags := "\"-C\",\"relocation-model=static\",\"-C\",\"force-unwind-tables=no\",\"-C\",\"link-arg=--icf=all\"," + remap
tiny_cargo := "-Z panic-immediate-abort -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size --release --target-dir target/tiny --config 'profile.release.panic=\"immediate-abort\"'"
podman_run := "podman run $(grep -v '^#' tests/containers/podman-run-flags | tr '\\n' ' ')"
# The binaries that ship (images, release files): the smallest build that passes the whole
# suite on each architecture, the nightly size-optimised one on both (docs/install.md, "Which
# build ships").
release_x86_64 := "target/tiny/" + target + "/release/bundle-init"
release_aarch64 := "target/tiny/" + aarch64 + "/release/bundle-init"
# This machine's architecture as podman names it (the images are tagged with it).
host_arch := if arch() == "aarch64" { "arm64" } else { "amd64" }

default:
    @just --list

# Static musl release binaries: bundle-init and the test daemon bundle-testd.
build:
    cargo build --release --target {{target}} {{static}}
    @file {{release}}/bundle-init
    @ls -l {{release}}/bundle-init

# The same static binaries for aarch64, linked by rust-lld (no cross compiler needed).
build-aarch64:
    rustup target add {{aarch64}} >/dev/null
    cargo build --release --target {{aarch64}} --config 'target.{{aarch64}}.linker="rust-lld"' --config 'target.{{aarch64}}.rustflags=["-C","relocation-model=static",{{remap}}]'
    @file target/{{aarch64}}/release/bundle-init

# Flag F: the interpreter is opened now, so it works inside containers and namespaces too.
# Idempotent; fails loudly if it cannot.
# Registers qemu-aarch64-static with binfmt_misc, so aarch64 binaries run here.
binfmt:
    #!/usr/bin/env bash
    set -euo pipefail
    qemu=/usr/bin/qemu-aarch64-static
    [ -x "$qemu" ] || { echo "binfmt: $qemu is missing (apt-get install qemu-user-static)" >&2; exit 1; }
    dir=/proc/sys/fs/binfmt_misc
    mountpoint -q "$dir" || mount -t binfmt_misc binfmt_misc "$dir"
    entry=$dir/qemu-aarch64
    # Another registration of the name (Debian's, with flags OPF and a wrapper) is replaced.
    if [ -e "$entry" ] && ! grep -qx "interpreter $qemu" "$entry"; then echo -1 > "$entry"; fi
    if [ ! -e "$entry" ]; then
        magic=$(sed -n 's/^:qemu-aarch64:M::\([^:]*:[^:]*\):.*/\1/p' /usr/lib/binfmt.d/qemu-aarch64.conf)
        [ -n "$magic" ] || { echo "binfmt: no aarch64 magic in /usr/lib/binfmt.d/qemu-aarch64.conf" >&2; exit 1; }
        echo ":qemu-aarch64:M::$magic:$qemu:F" > "$dir/register"
    fi
    grep -qx enabled "$entry" && grep -q '^flags: .*F' "$entry" || { echo "binfmt: qemu-aarch64 is not enabled with flag F" >&2; exit 1; }

# Checks that would observe the emulator instead of bundle-init skip, each saying so.
# The PID-1 suites again, against the aarch64 binaries, run by qemu-user through binfmt.
test-aarch64: build-aarch64 build-tiny binfmt
    #!/usr/bin/env bash
    set -euo pipefail
    bin=$PWD/target/{{aarch64}}/release
    init=$PWD/{{release_aarch64}}
    file "$init" | grep -q 'ARM aarch64.*statically linked' || { echo "not a static aarch64 binary: $init" >&2; exit 1; }
    "$init" --version
    skipped=$(mktemp)
    BUNDLE_INIT_BIN=$init BUNDLE_INIT_TESTD=$bin/bundle-testd BUNDLE_INIT_EMULATED=1 \
        BUNDLE_INIT_SKIPPED=$skipped cargo test --release --no-fail-fast \
        --test core --test bundle --test hardening --test readiness --test control --test reload --test lifecycle -- --test-threads 2
    echo "skipped on the emulated run: $(sort -u "$skipped" | wc -l) checks"
    sort -u "$skipped"
    rm -f "$skipped"

# Both architectures' builds: bundle-init and bundle-testd for x86_64 and aarch64.
build-all: build build-aarch64

# Each is tagged :amd64 and :arm64 (and :latest for this machine's architecture); each pair
# is joined in a manifest list written as an OCI archive, target/image/NAME.oci.tar, so
# `podman run --arch arm64 oci-archive:target/image/bundle-init.oci.tar` picks its instance.
# The list is not kept in local storage: podman 4.3 cannot pick an instance from a local
# list reliably (`run --arch` takes the wrong one, and `podman images` then fails).
# The distribution image (one file) and the demo bundle image, for both architectures.
image: build-all build-tiny
    #!/usr/bin/env bash
    set -euo pipefail
    for arch in amd64 arm64; do
        if [ "$arch" = amd64 ]; then target={{target}}; else target={{aarch64}}; fi
        mkdir -p target/image/$arch
        cp target/$target/release/bundle-testd target/image/$arch/
        if [ "$arch" = amd64 ]; then init={{release_x86_64}}; else init={{release_aarch64}}; fi
        cp "$init" target/image/$arch/bundle-init
        podman build --quiet --platform linux/$arch --target demo -t localhost/bundle-init-demo:$arch . >/dev/null
        podman build --quiet --platform linux/$arch -t localhost/bundle-init:$arch . >/dev/null
    done
    for name in bundle-init bundle-init-demo; do
        podman tag localhost/$name:{{host_arch}} localhost/$name:latest
        list=localhost/$name-multiarch-$$
        podman manifest create $list >/dev/null
        for arch in amd64 arm64; do
            podman manifest add $list containers-storage:localhost/$name:$arch >/dev/null
        done
        rm -f target/image/$name.oci.tar
        podman manifest push --quiet --all $list oci-archive:target/image/$name.oci.tar:localhost/$name:latest
        podman manifest rm $list >/dev/null
    done

# Real daemons from Debian in an image with bundle-init as its entrypoint (tests/daemons.rs):
# a bookworm base from debootstrap (nothing can be pulled), Debian's nginx, postgres, redis
# and php-fpm on it (both kept once built), and the shipped x86_64 bundle-init on top.
daemons-image: build-tiny
    #!/usr/bin/env bash
    set -euo pipefail
    if ! podman image exists localhost/debian:bookworm; then
        root=$(mktemp -d)
        debootstrap --variant=minbase bookworm "$root" >/dev/null
        tar -C "$root" -c . | podman import - localhost/debian:bookworm >/dev/null
        rm -rf "$root"
    fi
    if ! podman image exists localhost/bundle-init-daemons:bookworm; then
        podman build --quiet --runtime runc -f tests/daemons/Containerfile.daemons \
            -t localhost/bundle-init-daemons:bookworm tests/daemons >/dev/null
    fi
    mkdir -p target/image/daemons
    cp tests/daemons/Containerfile tests/daemons/nginx.conf target/image/daemons/
    cp {{release_x86_64}} target/image/daemons/bundle-init
    podman build --quiet --runtime runc -t localhost/bundle-init-daemons-test:latest target/image/daemons >/dev/null

# Without DOCKER_HOST a dockerd of its own runs for the tests' time (tests/docker/dockerd;
# .ci/run starts one itself).
# Everything CI runs: unit tests, PID-1 tests under unshare, container tests in podman and Docker.
test: image daemons-image
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${DOCKER_HOST:-}" ]; then
        eval "$(bash tests/docker/dockerd start target/dockerd)"
        trap 'bash tests/docker/dockerd stop target/dockerd' EXIT
        export DOCKER_HOST
    fi
    BUNDLE_INIT_REQUIRE_ENGINE=1 cargo test --release -- --test-threads 4

# Without DOCKER_HOST a dockerd of its own runs for the tests' time.
# The recipes in examples/ (tests/examples.rs) and the Docker suite (tests/docker.rs).
test-examples: image daemons-image
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${DOCKER_HOST:-}" ]; then
        eval "$(bash tests/docker/dockerd start target/dockerd)"
        trap 'bash tests/docker/dockerd stop target/dockerd' EXIT
        export DOCKER_HOST
    fi
    BUNDLE_INIT_REQUIRE_ENGINE=1 cargo test --release --test examples --test docker

# Only the tests that need a container engine: containers, pods, compose.
test-containers: image
    BUNDLE_INIT_REQUIRE_ENGINE=1 cargo test --release --test containers --test orchestrators

# The container suite again on the arm64 images, run by qemu-user through binfmt.
test-containers-arm64: image binfmt
    #!/usr/bin/env bash
    set -euo pipefail
    skipped=$(mktemp)
    BUNDLE_INIT_REQUIRE_ENGINE=1 BUNDLE_INIT_ARCH=arm64 BUNDLE_INIT_EMULATED=1 BUNDLE_INIT_SKIPPED=$skipped \
        cargo test --release --no-fail-fast --test containers
    echo "skipped on the emulated run: $(sort -u "$skipped" | wc -l) checks"
    sort -u "$skipped"
    rm -f "$skipped"

# The seed's four-daemon bundle in a container: restart one, reload one, stop, show logs.
demo: image
    #!/usr/bin/env bash
    set -euo pipefail
    name=bundle-init-demo-$$
    trap 'podman rm -f "$name" >/dev/null 2>&1 || true' EXIT
    {{podman_run}} -d --name "$name" -e CRED_TOKEN=demo localhost/bundle-init-demo:{{host_arch}} >/dev/null
    until podman logs "$name" 2>&1 | grep -q 'supervise .* started'; do sleep 0.1; done
    echo "== podman kill --signal USR1: restart pipelock only"
    podman kill --signal USR1 "$name" >/dev/null
    until podman logs "$name" 2>&1 | grep -q 'restarted (SIGUSR1)'; do sleep 0.1; done
    echo "== podman kill --signal HUP: reload egress only"
    podman kill --signal HUP "$name" >/dev/null
    until podman logs "$name" 2>&1 | grep -q 'got SIGHUP'; do sleep 0.1; done
    echo "== podman stop -t 10"
    podman stop -t 10 "$name" >/dev/null
    echo "== podman logs (stdout and stderr merged)"
    podman logs "$name" 2>&1
    echo "== exit code: $(podman inspect "$name" --format '{{{{.State.ExitCode}}')"

# New seeds each run; BUNDLE_INIT_MODEL_SEED=N replays one. Run it after supervisor changes.
# The supervisor's model-based test, for SECONDS.
model SECONDS="600":
    BUNDLE_INIT_MODEL_SECONDS={{SECONDS}} cargo test --release --lib supervisor::tests::model -- --nocapture

# The long hardening runs: 200k-signal storms, 20k racing restarts, 10k restarts for leaks.
soak:
    BUNDLE_INIT_SOAK=1 cargo test --release --test hardening -- --test-threads 1

# Fuzz the bundle-file parser and the command line (cargo-fuzz, nightly), SECONDS each.
fuzz SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
    cd fuzz && cargo +nightly fuzz run bundle_file -- -dict=bundle_file.dict -max_total_time={{SECONDS}}
    cd fuzz && cargo +nightly fuzz run command_line -- -max_total_time={{SECONDS}}

# Benchmarks against tini, catatonit, dumb-init, s6 and supervisord (installs them).
# `just bench --quick` runs in under a minute. Results: docs/BENCHMARKS.md.
bench *ARGS: build build-tiny
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in tini catatonit dumb-init s6 supervisor file; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; fi
    cargo build --quiet --release --manifest-path bench/Cargo.toml
    bench/target/release/bundle-init-bench --bundle-init {{release}}/bundle-init --shipped {{release_x86_64}} --testd {{release}}/bundle-testd {{ARGS}}

# The tiny build: nightly, std rebuilt with an immediate-abort panic strategy.
build-tiny:
    rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
    rustup component add rust-src --toolchain nightly
    rustup target add x86_64-unknown-linux-musl --toolchain nightly
    cargo +nightly build {{tiny_cargo}} --target {{target}} --config 'target.{{target}}.linker="rust-lld"' --config 'target.{{target}}.rustflags=[{{tiny_flags}}]'
    @file target/tiny/{{target}}/release/bundle-init
    @ls -l target/tiny/{{target}}/release/bundle-init
    just build-tiny-aarch64

# The size-optimised build for aarch64. Nightly's aarch64 musl std cannot be downloaded
# here, and -Zbuild-std rebuilds std but still links the target's self-contained musl
# objects (crt1.o, libc.a, libunwind.a): the stable toolchain's aarch64 musl target has the
# same musl's, so nightly's sysroot gets a link to them (made once, idempotent).
build-tiny-aarch64:
    #!/usr/bin/env bash
    set -euo pipefail
    rustup target add {{aarch64}} >/dev/null
    have=$(rustc +stable --print sysroot)/lib/rustlib/{{aarch64}}/lib/self-contained
    want=$(rustc +nightly --print sysroot)/lib/rustlib/{{aarch64}}/lib
    [ -f "$have/crt1.o" ] || { echo "no self-contained musl objects in $have" >&2; exit 1; }
    mkdir -p "$want"
    [ -e "$want/self-contained" ] || ln -s "$have" "$want/self-contained"
    cargo +nightly build {{tiny_cargo}} --target {{aarch64}} --config 'target.{{aarch64}}.linker="rust-lld"' --config 'target.{{aarch64}}.rustflags=[{{tiny_flags}}]'
    file target/tiny/{{aarch64}}/release/bundle-init | grep -q 'ARM aarch64.*statically linked'
    ls -l target/tiny/{{aarch64}}/release/bundle-init

# The shipped files against their size budget (tests/size-budget): fails when one is more
# than 1 % over.
size-check: build-tiny
    #!/usr/bin/env bash
    set -euo pipefail
    while read -r arch budget; do
        case "$arch" in ''|'#'*) continue ;; esac
        case "$arch" in
            x86_64) file={{release_x86_64}} ;;
            aarch64) file={{release_aarch64}} ;;
            *) echo "tests/size-budget: unknown architecture $arch" >&2; exit 1 ;;
        esac
        size=$(stat -c %s "$file")
        limit=$((budget + budget / 100))
        echo "$arch: $size bytes, budget $budget (limit $limit)"
        [ "$size" -le "$limit" ] || { echo "$arch: $size bytes is more than 1 % over its budget of $budget (tests/size-budget)" >&2; exit 1; }
    done < tests/size-budget

# The same PID-1 and bundle test suites against the tiny build.
test-tiny: build-tiny
    BUNDLE_INIT_BIN=$PWD/target/tiny/{{target}}/release/bundle-init cargo test --release --no-fail-fast --test core --test bundle --test hardening --test readiness --test control --test reload --test lifecycle

# Under load: two busy loops, the tests pinned to CPU 0 with 8 threads. FILTER narrows to
# matching tests (`just stress 30 storm`). Results: docs/TESTING.md.
# The non-container suites N times in a row under load; one pass/fail line per round.
stress N="20" *FILTER:
    #!/usr/bin/env bash
    set -uo pipefail
    cargo test --release --no-run --test core --test bundle --test readiness --test control --test hardening --test reload 2>/dev/null
    hogs=()
    for _ in 1 2; do (while :; do :; done) & hogs+=($!); done
    trap 'kill "${hogs[@]}" 2>/dev/null' EXIT
    failed=0
    for round in $(seq 1 {{N}}); do
        log=target/stress-$round.log
        start=$SECONDS
        if taskset -c 0 cargo test --release --test core --test bundle --test readiness --test control --test hardening --test reload -- --test-threads 8 {{FILTER}} >"$log" 2>&1; then
            echo "round $round: pass ($((SECONDS - start)) s)"
            rm -f "$log"
        else
            failed=$((failed + 1))
            echo "round $round: FAIL ($((SECONDS - start)) s): $(grep -E '^test .* FAILED$' "$log" | tr '\n' ' ')(log: $log)"
        fi
    done
    echo "stress: $(({{N}} - failed)) of {{N}} rounds passed"
    [ "$failed" -eq 0 ]

mutants_files := "--file 'src/supervisor/*.rs' --file 'src/supervisor/daemon/*.rs' --file src/reload.rs --file src/config.rs --file src/values.rs --file src/time.rs --file src/keys.rs --file src/output.rs --file src/spawn.rs"
mutants_tests := "-- --lib --test core --test bundle --test readiness --test control --test hardening --test reload"
mutants_limits := "--jobs 1 --timeout 45 --build-timeout 300"

# Which realistic bugs would the unit and PID-1 suites miss? Debug builds, one mutant at a
# time. Score, survivors and run time: docs/TESTING.md.
# Mutation testing (cargo-mutants) of the supervisor, config, output and spawn modules.
mutants: (_mutants "")

# The same, only on the lines changed since BASE (a commit or branch): before a submission.
mutants-diff BASE:
    mkdir -p target && git diff {{BASE}} > target/mutants.diff
    just _mutants "--in-diff target/mutants.diff"

# A test binary killed at the timeout never runs its cleanup, so a mutant's bundle-init may
# go on spinning: programs from cargo-mutants' scratch trees that outlive the timeout die.
_mutants ARGS:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
    (while sleep 10; do
        for p in $(pgrep -f '^/tmp/cargo-mutants-' || true); do
            [ "$(ps -o etimes= -p "$p" 2>/dev/null || echo 0)" -gt 150 ] && kill -9 "$p" 2>/dev/null || true
        done
    done) &
    reaper=$!
    trap 'kill $reaper 2>/dev/null' EXIT
    cargo mutants {{ARGS}} {{mutants_files}} {{mutants_limits}} {{mutants_tests}}

# SOURCE_DATE_EPOCH is the last commit's time: the images' timestamps, not the clock's.
# Release files in dist/: a static binary per architecture (uname -m names, and the same
# file under podman's amd64/arm64 names), the multi-arch image as an OCI archive, SHA256SUMS.
dist: build-all build-tiny
    #!/usr/bin/env bash
    set -euo pipefail
    SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
    export SOURCE_DATE_EPOCH
    version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
    rm -rf dist && mkdir dist
    for pair in x86_64:amd64:{{release_x86_64}} aarch64:arm64:{{release_aarch64}}; do
        IFS=: read -r uname podarch bin <<<"$pair"
        file "$bin" | grep -q 'statically linked' || { echo "dist: $bin is not static" >&2; exit 1; }
        install -m 0755 "$bin" dist/bundle-init-$version-linux-$uname
        install -m 0755 "$bin" dist/bundle-init-$version-linux-$podarch
        touch -d "@$SOURCE_DATE_EPOCH" dist/bundle-init-$version-linux-$uname dist/bundle-init-$version-linux-$podarch
        mkdir -p target/image/$podarch
        cp "$bin" target/image/$podarch/bundle-init
        podman build --quiet --timestamp "$SOURCE_DATE_EPOCH" --platform linux/$podarch \
            -t localhost/bundle-init-release:$podarch . >/dev/null
    done
    list=localhost/bundle-init-release-list-$$
    podman manifest create $list >/dev/null
    for podarch in amd64 arm64; do
        podman manifest add $list containers-storage:localhost/bundle-init-release:$podarch >/dev/null
    done
    # Pushed to a directory, then archived with fixed names, order, owners and times: the
    # archive podman writes itself carries the clock's time.
    rm -rf target/dist-oci
    podman manifest push --quiet --all $list oci:target/dist-oci:localhost/bundle-init:$version
    podman manifest rm $list >/dev/null
    tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=gnu -C target/dist-oci -cf dist/bundle-init-$version.oci.tar .
    touch -d "@$SOURCE_DATE_EPOCH" dist/bundle-init-$version.oci.tar
    # The toolchains the files were built with: the same ones give the same bytes.
    { rustc -V; rustc +nightly -V; podman --version; } > dist/TOOLCHAINS
    touch -d "@$SOURCE_DATE_EPOCH" dist/TOOLCHAINS
    (cd dist && sha256sum bundle-init-* TOOLCHAINS > SHA256SUMS)
    ls -l dist && cat dist/SHA256SUMS

# Two `just dist` runs, the second after the release builds were removed: the same bytes.
dist-check:
    just dist
    cp dist/SHA256SUMS target/SHA256SUMS.first
    rm -rf target/{{target}}/release target/{{aarch64}}/release target/tiny/{{target}}/release
    just dist
    diff target/SHA256SUMS.first dist/SHA256SUMS && echo "dist is reproducible: identical SHA256SUMS"
