# otsec sensor image: build the wheel (with the compiled core), then a slim non-root runtime.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends rustc-web cargo-web gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY otsec ./otsec
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
# tcpdump compiles the kernel capture filter; nothing else is needed at run time
RUN apt-get update && apt-get install -y --no-install-recommends tcpdump \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/otsec --create-home otsec
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER otsec
WORKDIR /var/lib/otsec
ENV OTSEC_SPOOL_DIR=/var/lib/otsec/spool
ENTRYPOINT ["otsec"]
CMD ["--help"]
