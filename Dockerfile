# jkmon in a container: build in a Rust image, run on a slim Debian as a non-root user.
#   docker build -t jkmon .                                   # for this machine
#   docker buildx build --platform linux/arm64 -t jkmon .      # for a Raspberry Pi 3/4/5 (64-bit)
# Nothing needs a -dev package: SQLite and libdbus are compiled in, TLS is rustls.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY benches ./benches
RUN cargo build --release --locked --bin jkmon

FROM debian:bookworm-slim AS runtime
# The user is in group 'bluetooth' by gid only if the host's gid matches; see the README for the
# D-Bus policy that lets it talk to BlueZ.
RUN useradd --system --uid 10001 --home /var/lib/jkmon --create-home jkmon
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
