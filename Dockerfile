# Multi-stage build of the wsgate image: a static-enough Rust binary on a small non-root base.
#   docker build -t wsgate:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin wsgate \
 && strip target/release/wsgate

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wsgate /usr/local/bin/wsgate
# The chart runs it as 65532 with a read-only root filesystem; nothing is written at run time.
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["controller"]
