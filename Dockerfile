# jkmon in a container: build in a Rust image, run on a slim Debian as a non-root user.
#   docker build -t jkmon .                                   # for this machine
#   docker buildx build --platform linux/arm64 -t jkmon .      # for a Raspberry Pi 3/4/5 (64-bit)
# Nothing needs a -dev package: SQLite and libdbus are compiled in, TLS is rustls.

# The Rust release the project is tested with; bump it deliberately.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: a change to jkmon's code rebuilds jkmon only,
# not the ~350 crates below it.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin jkmon \
    && rm -rf src target/release/jkmon target/release/deps/jkmon-* target/release/deps/libjkmon-* \
       target/release/.fingerprint/jkmon-*
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN cargo build --release --locked --bin jkmon

FROM debian:bookworm-slim AS runtime
# The user is in group 'bluetooth' by gid only if the host's gid matches; see the README for the
# D-Bus policy that lets it talk to BlueZ.
# ca-certificates: mqtts:// to a public broker checks its certificate against them.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/jkmon --create-home jkmon
COPY --from=build /src/target/release/jkmon /usr/local/bin/jkmon
USER jkmon
WORKDIR /var/lib/jkmon
ENV DB_PATH=/var/lib/jkmon/inverter.db \
    WEB_BIND=0.0.0.0:8000
VOLUME ["/var/lib/jkmon"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["jkmon", "healthcheck", "--quiet"]
ENTRYPOINT ["jkmon"]
CMD ["run"]
