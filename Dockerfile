# otsec sensor image
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY otsec ./otsec
COPY rules ./rules
COPY kibana ./kibana
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --home /var/lib/otsec --create-home otsec
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER otsec
WORKDIR /var/lib/otsec
ENTRYPOINT ["otsec"]
CMD ["--help"]
