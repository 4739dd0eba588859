# Production image: PostgreSQL + Redis configured through AUTHGATE_* variables.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --create-home --uid 10001 authgate
COPY --from=build /install /usr/local
WORKDIR /app
# Avatars; mount a volume here shared by the API and the worker (the purge erases files too).
RUN mkdir -p /app/uploads && chown authgate /app/uploads
USER authgate
ENV AUTHGATE_ENV=production \
    AUTHGATE_HOST=0.0.0.0 \
    AUTHGATE_PORT=8000 \
    AUTHGATE_UPLOAD_DIR=/app/uploads
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/live').status == 200 else 1)"
CMD ["authgate", "serve"]
