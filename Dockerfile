FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home --uid 10001 app
COPY pyproject.toml README.md ./
COPY budgeting_site ./budgeting_site
COPY budgets ./budgets
COPY ratelimits ./ratelimits
COPY costs ./costs
COPY quotas ./quotas
COPY receipts ./receipts
COPY events ./events
COPY approvals ./approvals
COPY templates ./templates
COPY static ./static
COPY manage.py ./
RUN pip install --no-cache-dir . \
 && DJANGO_SECRET_KEY=build JWT_SECRET=build DJANGO_DEBUG=false python manage.py collectstatic --noinput
# Metrics of every gunicorn (and Celery) process on one /metrics (docs/scaling.md, Metrics);
# set after the build steps, so the folder is made at start by the user that writes it.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/budgeting-metrics
USER app
EXPOSE 8000
CMD ["gunicorn", "budgeting_site.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4", "--access-logfile", "-"]
