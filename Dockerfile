# jkmon in a container. Build: docker build -t jkmon .
# Today the image runs the demo (simulated BMS and inverter into /var/lib/jkmon/demo.db); the
# healthcheck and the host D-Bus setup for Bluetooth come with the deployment work.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin jkmon

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /var/lib/jkmon --create-home jkmon
COPY --from=build /src/target/release/jkmon /usr/local/bin/jkmon
USER jkmon
WORKDIR /var/lib/jkmon
ENV JK_BMS_TRANSPORT=sim
ENTRYPOINT ["jkmon"]
CMD ["run", "--demo"]
