# otsec sensor image: build the wheel, then a slim runtime with a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY otsec ./otsec
COPY rules ./rules
COPY kibana ./kibana
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
