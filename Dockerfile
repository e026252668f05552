# syntax=docker/dockerfile:1

# Build stage: a release binary, no system libraries needed (pure-Rust dependencies).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
ARG WHARF_GIT_REVISION=unknown
ENV WHARF_GIT_REVISION=${WHARF_GIT_REVISION}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wharf \
    && cp target/release/wharf /usr/local/bin/wharf

# Runtime stage: Debian slim, the binary, registry:2's default config, a non-root user.
FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 wharf \
    && useradd --system --uid 10001 --gid wharf --no-create-home \
       --home-dir /var/lib/registry --shell /usr/sbin/nologin wharf \
    && mkdir -p /var/lib/registry /etc/docker/registry \
    && chown wharf:wharf /var/lib/registry
COPY --from=build /usr/local/bin/wharf /usr/local/bin/wharf
COPY deploy/docker/config.yml /etc/docker/registry/config.yml
USER 10001:10001
VOLUME ["/var/lib/registry"]
# 5000: the registry API. 5001: the debug server (probes, metrics) when http.debug.addr is set.
EXPOSE 5000 5001
# GET / on the API port: 200 while healthy, 503 while a health check fails (as registry:2),
# over bash's /dev/tcp so the image needs no HTTP client.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/5000 && printf 'GET / HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r _ status _ <&3 && [ \"$status\" = 200 ]"]
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve", "/etc/docker/registry/config.yml"]
