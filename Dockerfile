# The wsgate image: the release binary, the few shared libraries it links and the CA bundle, on
# an empty base (no shell, no package manager), run as UID 65532. packaging/rootfs.sh lays the
# files out; .ci/image builds the same layout with buildah (no Docker daemon, no registry).
#   docker build -t wsgate:0.1.0 .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# A member of the workspace: cargo needs its manifest to build anything.
COPY tests/support ./tests/support
COPY packaging ./packaging
RUN cargo build --release --locked --bin wsgate \
 && strip target/release/wsgate \
 && packaging/rootfs.sh target/release/wsgate /rootfs

FROM scratch
COPY --from=build /rootfs/ /
# The chart runs it as 65532 with a read-only root filesystem; nothing is written at run time.
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/wsgate"]
CMD ["controller"]
