RUN echo before any stage
FROM alpine AS base
FORM alpine
COPY --form=base a b
RUN --mount=type=secret echo
FROM base
COPY --from=later x y
FROM scratch AS later
FROM scratch
COPY --from=1 a b
