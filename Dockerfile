# jkmon in a container: compiled on the build machine for the platform asked for (a
# cross-compile, not an emulated build: a Raspberry Pi image takes minutes on a laptop, not
# hours), run on a slim Debian as a non-root user.
#   docker build -t jkmon .                                                   # this machine
#   docker buildx build --platform linux/arm64,linux/arm/v7 -t jkmon .        # Raspberry Pi
#   (linux/arm64: Pi 3/4/5 with a 64-bit OS; linux/arm/v7: 32-bit Raspberry Pi OS)
# Nothing needs a -dev package: SQLite and libdbus are compiled in, TLS is rustls.

# The Rust release the project is tested with; bump it deliberately. It runs on the build
# machine's own platform whatever the target.
FROM --platform=$BUILDPLATFORM rust:1.95.0-bookworm AS build
# Set by BuildKit (docker build, buildx, Compose v2) for the platform asked for; empty under
# the classic builder, which builds for the machine it runs on.
ARG TARGETARCH
ARG TARGETVARIANT
WORKDIR /src
# The Rust target of the platform asked for and, when that is not the build machine's own,
# Debian's C cross compiler for it (the C parts: SQLite, libdbus, ring) and Rust's library.
RUN set -eu; \
    host="$(rustc -vV | sed -n 's/^host: //p')"; \
    platform="${TARGETARCH}${TARGETVARIANT:+/$TARGETVARIANT}"; \
    if [ "$platform" = arm64/v8 ]; then platform=arm64; fi; \
    case "$platform" in \
      "") triple="$host" ;; \
      amd64) triple=x86_64-unknown-linux-gnu; cross="gcc-x86-64-linux-gnu libc6-dev-amd64-cross" ;; \
      arm64) triple=aarch64-unknown-linux-gnu; cross="gcc-aarch64-linux-gnu libc6-dev-arm64-cross" ;; \
      arm/v7) triple=armv7-unknown-linux-gnueabihf; cross="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross" ;; \
      *) echo "jkmon's image builds for linux/amd64, linux/arm64 and linux/arm/v7, not linux/$platform" >&2; exit 1 ;; \
    esac; \
    if [ "$triple" != "$host" ]; then \
      apt-get update && apt-get install -y --no-install-recommends $cross \
      && rm -rf /var/lib/apt/lists/* && rustup target add "$triple"; \
    fi; \
    echo "$triple" > /rust-target; \
    mkdir -p /out/home
# Each target's linker is its cross gcc (the build machine's own gcc answers to its name too).
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
# Dependencies first, in a layer of their own: a change to jkmon's code rebuilds jkmon only,
# not the ~350 crates below it.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin jkmon --target "$(cat /rust-target)" \
    && rm -rf src target/*/release/jkmon target/*/release/deps/jkmon-* \
       target/*/release/deps/libjkmon-* target/*/release/.fingerprint/jkmon-*
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN cargo build --release --locked --bin jkmon --target "$(cat /rust-target)" \
    && cp "target/$(cat /rust-target)/release/jkmon" /out/jkmon

# Debian 12's point release, pinned like the Rust image: bump it deliberately.
FROM debian:12.11-slim AS runtime
# Nothing runs in this stage (no RUN): building it for another platform needs no emulation.
# ca-certificates: mqtts:// to a public broker checks its certificate against them.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=10001:10001 /out/home /var/lib/jkmon
COPY --from=build /out/jkmon /usr/local/bin/jkmon
# Time zone: the base image has tzdata and counts in UTC; docker-compose.yml mounts the host's
# /etc/localtime so "today" (energy, the bot) is the owner's day, and TZ=Area/City in .env
# chooses another zone. `jkmon doctor` shows the zone it counts in.
# uid 10001: it reaches BlueZ through the group 'bluetooth' that docker-compose.yml gives it by
# the host's number (BLUETOOTH_GID in .env; the book's Installing: Docker).
USER 10001:10001
WORKDIR /var/lib/jkmon
ENV HOME=/var/lib/jkmon \
    DB_PATH=/var/lib/jkmon/inverter.db \
    WEB_BIND=0.0.0.0:8000
VOLUME ["/var/lib/jkmon"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["jkmon", "healthcheck", "--quiet"]
ENTRYPOINT ["jkmon"]
CMD ["run"]
