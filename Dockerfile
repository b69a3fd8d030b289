# syntax=docker/dockerfile:1
#
# The model server image, built the conventional way: the same user, paths, environment, port
# and entrypoint as the image `cargo xtask image` writes, with the layer that changes most (the
# model) last.
#
# This file cannot be built on a machine without registry access — Slipway's own CI machines
# among them — because every FROM below needs a pull. `cargo xtask image` is the daemonless path:
# crates/image builds the same layout as a bit-for-bit reproducible OCI image (layout, `docker
# load`-able tar, CycloneDX SBOM) with no Docker engine and no base image, and pushes it.
#
#   docker build -t slipway-serve --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The model comes from the build context (models/model.onnx, written by `cargo xtask ci`). Keep
# target/, .slipway/ and data/ out of the context with a .dockerignore.

ARG ONNXRUNTIME_VERSION=1.32.0

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p slipway-serve

# ONNX Runtime is loaded at run time (ort's load-dynamic); take the library from the PyPI wheel,
# as the training environment does.
FROM python:3.11-slim-bookworm AS onnxruntime
ARG ONNXRUNTIME_VERSION
RUN pip install --no-cache-dir "onnxruntime==${ONNXRUNTIME_VERSION}" \
 && capi="$(python -c 'import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))')/capi" \
 && cp "$capi/libonnxruntime.so.${ONNXRUNTIME_VERSION}" /libonnxruntime.so

# debian:12-slim brings libc, libgcc_s and libstdc++ (what `ldd` finds for the server and ONNX
# Runtime) and the C.UTF-8 locale the model's StringNormalizer asks for: the daemonless image
# copies exactly these from the build machine instead.
FROM debian:12-slim
ARG ONNXRUNTIME_VERSION
ARG REVISION=unknown
ARG VERSION=0.0.0
ARG SOURCE=
RUN groupadd --gid 10001 slipway \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /sbin/nologin slipway
COPY --from=onnxruntime /libonnxruntime.so /opt/onnxruntime/libonnxruntime.so.${ONNXRUNTIME_VERSION}
COPY --from=build /src/target/release/slipway-serve /usr/local/bin/slipway-serve
COPY models/model.onnx /model/model.onnx
ENV SLIPWAY_MODEL=/model/model.onnx \
    SLIPWAY_LISTEN=0.0.0.0:8080 \
    ORT_DYLIB_PATH=/opt/onnxruntime/libonnxruntime.so.${ONNXRUNTIME_VERSION}
LABEL org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.source=${SOURCE}
EXPOSE 8080/tcp
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/slipway-serve"]
