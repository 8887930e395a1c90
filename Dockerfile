# syntax=docker/dockerfile:1
#
# Global Planner image: one self-contained binary (`deno compile`) on distroless, non-root.
#
#   docker build -t global-planner .
#   docker run --rm global-planner --help
#   docker run --rm -e DYN_NAMESPACE=demo -e DYN_DISCOVERY_BACKEND=file global-planner --no-operation
#
# Base images are pinned by tag. For reproducible, tamper-evident builds pin them by digest as well
# (`denoland/deno:2.9.6@sha256:...`, `gcr.io/distroless/cc-debian12:nonroot@sha256:...`); the
# digests could not be resolved where this file was written (no container registry reachable).

# ---- Stage 1: compile -------------------------------------------------------------------------
FROM denoland/deno:2.9.6 AS build
WORKDIR /src

# Dependencies first (their own layer, verified against the lockfile), then the sources.
COPY deno.json deno.lock ./
RUN deno install --frozen

COPY main.ts ./
COPY src/ ./src/

# `deno task compile` = `deno compile -P=service --output global-planner main.ts`: the binary gets
# exactly the `permissions.service` set from deno.json baked in. Never add -A / --allow-all here.
# It downloads denort (the runtime the binary is built on) for Deno 2.9.6 from dl.deno.land; with no
# internet access, provide one and set DENORT_BIN=/path/to/denort (deno compile reads it natively).
# Size: the binary embeds the module graph of main.ts (`deno info main.ts`: about 7.5 MB, was 69 MB; of it
# zod 5.9 MB, yaml 0.7 MB, @msgpack/msgpack 0.6 MB; @kubernetes/client-node is no longer in it).
RUN deno task compile && ./global-planner --help >/dev/null

# ---- Stage 2: run -----------------------------------------------------------------------------
# distroless/cc: glibc + libgcc, no shell, no package manager; `:nonroot` runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /src/global-planner /global-planner

USER nonroot

# Read-only-root-filesystem friendly: the service writes nothing except
#   - the file discovery directory (DYN_DISCOVERY_BACKEND=file; DYN_FILE_KV, default
#     $TMPDIR/dynamo_store_kv = /tmp/dynamo_store_kv), which must be a mounted volume shared with
#     the local planners, or an emptyDir at /tmp; the binary may only write under /tmp (its
#     baked-in permission set), so mount it at /tmp or below;
#   - the Deno runtime's best-effort code cache in the temp directory (an emptyDir at /tmp keeps it).
# With DYN_DISCOVERY_BACKEND=etcd (the default) nothing needs to be writable.
#
# Ports: none is required. The TCP request plane listens on DYN_TCP_RPC_PORT (default: any free
# port) and is advertised through discovery. When DYN_SYSTEM_PORT is set (deploy/deployment.yaml
# uses 9090) the system status server answers GET /health, /live and /metrics there.
# EXPOSE 9090

ENTRYPOINT ["/global-planner"]
