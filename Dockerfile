# The Custody manager as a static, non-root, distroless image. Build it with `make image` where a
# container engine exists (docker or podman); push it and set the chart's image.repository/tag.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY controllers/ controllers/
COPY internal/ internal/
COPY main.go ./
# Static (no cgo), reproducible paths, no symbol tables.
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/manager .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/manager /manager
# 65532 is distroless' nonroot user; the chart's pod runs with runAsNonRoot.
USER 65532:65532
ENTRYPOINT ["/manager"]
