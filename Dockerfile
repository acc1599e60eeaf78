# SpecServe: build with the Swift toolchain and OpenBLAS headers, run on a slim Debian with the OpenBLAS runtime.
#
#   docker build -t specserve .
#   docker run --rm -p 8080:8080 specserve
#   docker run --rm -p 8080:8080 -e SPECSERVE_API_KEY=secret specserve   # with api_key_env set in the config
#
# The SIMD kernels are compiled for SPECSERVE_TARGET_CPU (haswell = AVX2 + FMA, runs on any x86-64-v3 CPU);
# pass --build-arg SPECSERVE_TARGET_CPU=znver4 (or skylake-avx512) for an image tuned to AVX-512 hosts.

FROM swift:6.2-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
ARG SPECSERVE_TARGET_CPU=haswell
ENV SPECSERVE_TARGET_CPU=${SPECSERVE_TARGET_CPU}
RUN swift build -c release --static-swift-stdlib --product specserve \
 && cp "$(swift build -c release --show-bin-path)/specserve" /usr/local/bin/specserve

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libopenblas0-pthread curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin specserve
WORKDIR /app
COPY --from=build /usr/local/bin/specserve /usr/local/bin/specserve
COPY config ./config
COPY models ./models
USER specserve
EXPOSE 8080
# /health answers 200 once the models are loaded (503 while loading or shutting down).
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/health || exit 1
# Inside the container the server must listen on all interfaces for -p to reach it; set an API key
# (server.api_key_env in the config) before exposing it beyond your machine.
ENTRYPOINT ["specserve", "serve", "--config", "/app/config/default.json", "--host", "0.0.0.0"]
