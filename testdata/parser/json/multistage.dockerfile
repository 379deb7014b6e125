# syntax=docker/dockerfile:1
# escape=\
ARG GO_VERSION=1.22
ARG BASE=golang:${GO_VERSION}

# build stage
FROM --platform=$BUILDPLATFORM ${BASE} AS Build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS="-trimpath"
RUN --mount=type=cache,target=/root/.cache/go-build \
    --mount=type=bind,source=.,target=/src,rw \
    --network=none \
    go build -o /out/app ./cmd/app
RUN <<EOF
set -e
echo built
EOF

FROM alpine:3.20 AS runtime
LABEL org.opencontainers.image.title="app" version=1
COPY --from=build --chown=app:app --chmod=0755 /out/app /usr/local/bin/app
COPY <<-CONF /etc/app.conf
	listen = 8080
CONF
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/data.tgz /data/
EXPOSE 8080/tcp
USER app
VOLUME ["/var/lib/app"]
HEALTHCHECK --interval=30s --retries=3 CMD wget -qO- http://localhost:8080/health
STOPSIGNAL SIGTERM
ONBUILD COPY . /app
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--serve"]
