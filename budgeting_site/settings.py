"""Settings, read from the environment (SPEC section 10).

With nothing set this is the embedded default: SQLite in WAL mode, an in-process cache, the
database rate-limit store and jobs on an in-process scheduler thread. `DATABASE_URL`,
`REDIS_URL` and `CELERY_BROKER_URL` switch to PostgreSQL, Redis and a Celery worker and beat.
"""

import json
import os
from pathlib import Path
from typing import overload

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: None = None) -> str | None: ...
def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-0123456789abcdef"
DEV_JWT_SECRET = "dev-insecure-jwt-secret-change-me-0123456789abcdef"

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env("DJANGO_SECRET_KEY", DEV_SECRET_KEY)
JWT_SECRET = env("JWT_SECRET", DEV_JWT_SECRET)
if not DEBUG:
    if SECRET_KEY == DEV_SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    if JWT_SECRET == DEV_JWT_SECRET:
        raise ImproperlyConfigured("JWT_SECRET must be set when DJANGO_DEBUG is off")

ALLOWED_HOSTS = [h.strip() for h in env("DJANGO_ALLOWED_HOSTS", "*").split(",") if h.strip()]
CORS_ALLOWED_ORIGINS = [o.strip() for o in env("CORS_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    # The admin with throttled sign-in and the dashboard (budgeting_site/platform/admin_site.py).
    "budgeting_site.platform.admin_apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_filters",
    "django_prometheus",
    "corsheaders",
    "budgeting_site.platform",
    "receipts",
    "events",
    "approvals",
    "budgets",
    "ratelimits",
    "costs",
    "quotas",
]

MIDDLEWARE = [
    "budgeting_site.platform.middleware.OutermostErrorMiddleware",
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "budgeting_site.platform.middleware.CorrelationIdMiddleware",
    "budgeting_site.platform.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
    # Sessions, CSRF, the session's user and messages serve the admin and the approval pages;
    # these run them everywhere but under API_PATH_PREFIXES (docs/platform.md, Middleware).
    "budgeting_site.platform.middleware.PageSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "budgeting_site.platform.middleware.PageCsrfViewMiddleware",
    "budgeting_site.platform.middleware.PageAuthenticationMiddleware",
    "budgeting_site.platform.middleware.PageMessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

# Django's security.W003 looks for CsrfViewMiddleware by its exact name; platform.E001
# (budgeting_site/platform/checks.py) checks for it or a subclass instead.
SILENCED_SYSTEM_CHECKS = ["security.W003"]

# Paths of the API: bearer tokens or API keys, never a session or a CSRF cookie.
API_PATH_PREFIXES = ("/budget/v1/",)

ROOT_URLCONF = "budgeting_site.urls"
WSGI_APPLICATION = "budgeting_site.wsgi.application"

# Domain apps plug their URLs in by dotted name: the platform layer imports none of them.
# Django tries them in this order on every request (their paths do not overlap): the
# endpoints called per operation of a client (the checks, cost recording) come first.
API_URL_MODULES = [
    "ratelimits.api.urls",
    "budgets.api.urls",
    "costs.api.urls",
    "quotas.api.urls",
    "receipts.api.urls",
    "events.api.urls",
    "approvals.api.urls",
]
PAGE_URL_MODULES = [("approvals/", "approvals.pages.urls")]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # Django's backend whose health check polls the socket before it sends `SELECT 1`.
        DATABASES["default"]["ENGINE"] = "budgeting_site.platform.postgresql"
        DATABASES["default"]["OPTIONS"] = {"connect_timeout": 5}
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            "OPTIONS": {
                # One writer at a time, taken at BEGIN: no upgrade deadlocks between readers
                # that later write; WAL lets readers go on while one writes.
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "budgeting_site.platform.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and rate-limit store -------------------------------------------------------------
REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
                # The cache is never used for decisions; a dead Redis must not fail pages.
                "IGNORE_EXCEPTIONS": True,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
RATELIMIT_STORE = env("RATELIMIT_STORE", "redis" if REDIS_URL else "database")
if RATELIMIT_STORE not in {"redis", "database", "memory"}:
    raise ImproperlyConfigured("RATELIMIT_STORE must be redis, database or memory")
if RATELIMIT_STORE == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("RATELIMIT_STORE=redis needs REDIS_URL")
RATELIMIT_REDIS_TIMEOUT_MS = int(env("RATELIMIT_REDIS_TIMEOUT_MS", "50"))
RATELIMIT_DENY_STATUS = int(env("RATELIMIT_DENY_STATUS", "200"))
RATELIMIT_SLIDING_LOG_MAX = int(env("RATELIMIT_SLIDING_LOG_MAX", "10000"))
# Test-only: lets a check carry its own clock. Never on in production.
RATELIMIT_ALLOW_INJECTED_CLOCK = env_bool("RATELIMIT_ALLOW_INJECTED_CLOCK", False)

# --- Jobs -----------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
# Without a broker, the jobs run on a scheduler thread inside the serving process.
JOBS_IN_PROCESS = CELERY_BROKER_URL is None

# --- This API's own limits (SPEC 1.5) -------------------------------------------------------
API_RATE_LIMIT_DEFAULTS = {
    "budget_check": 20000,
    "rate_limit_check": 50000,
    "cost_record": 10000,
    "cost_report": 100,
    "default": 1000,
}


def _api_rate_limits(raw: str | None) -> dict[str, int] | None:
    if raw is None:
        return dict(API_RATE_LIMIT_DEFAULTS)
    if raw.strip().lower() == "off":
        return None
    try:
        given = json.loads(raw)
        limits = {**API_RATE_LIMIT_DEFAULTS, **{str(k): int(v) for k, v in given.items()}}
    except (ValueError, TypeError, AttributeError) as exc:
        raise ImproperlyConfigured(f"API_RATE_LIMITS is not a JSON object or 'off': {exc}") from exc
    if any(v < 1 for v in limits.values()):
        raise ImproperlyConfigured("API_RATE_LIMITS values must be at least 1")
    return limits


API_RATE_LIMITS = _api_rate_limits(env("API_RATE_LIMITS"))
# Dotted path of the function that enforces API_RATE_LIMITS; the ratelimits app provides it.
API_RATE_LIMITER = env("API_RATE_LIMITER", "ratelimits.api_limits.enforce")

# --- Authentication -------------------------------------------------------------------------
JWT_ALGORITHMS = [a.strip() for a in env("JWT_ALGORITHMS", "HS256").split(",") if a.strip()]
JWT_PUBLIC_KEY = env("JWT_PUBLIC_KEY")
JWT_JWKS_URL = env("JWT_JWKS_URL")
JWT_AUDIENCE = env("JWT_AUDIENCE")
JWT_ISSUER = env("JWT_ISSUER")
_ALLOWED_JWT_ALGORITHMS = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "EdDSA", "ES256"}
if not JWT_ALGORITHMS or set(JWT_ALGORITHMS) - _ALLOWED_JWT_ALGORITHMS:
    raise ImproperlyConfigured(f"JWT_ALGORITHMS must be a subset of {_ALLOWED_JWT_ALGORITHMS}")

# --- Domain switches ------------------------------------------------------------------------
BUDGET_NO_MATCH = env("BUDGET_NO_MATCH", "allow")
BUDGET_HOLD_EXPIRY = env("BUDGET_HOLD_EXPIRY", "commit")
APPROVALS_ALLOW_TENANT_ADMIN = env_bool("APPROVALS_ALLOW_TENANT_ADMIN", False)
ANOMALY_CONSECUTIVE_DAYS = int(env("ANOMALY_CONSECUTIVE_DAYS", "3"))
ANOMALY_MIN_IMPACT = env("ANOMALY_MIN_IMPACT", "1.00")
RECEIPT_SIGNING_KEY = env("RECEIPT_SIGNING_KEY")
WEBHOOK_ALLOW_PRIVATE_URLS = env_bool("WEBHOOK_ALLOW_PRIVATE_URLS", False)
NOTIFICATION_ENGINE_URL = env("NOTIFICATION_ENGINE_URL")
# Signs deliveries to the notification engine; derived from DJANGO_SECRET_KEY when unset.
NOTIFICATION_ENGINE_SECRET = env("NOTIFICATION_ENGINE_SECRET")
METRICS_TOKEN = env("METRICS_TOKEN")
# One /metrics for every process of a machine (gunicorn workers, Celery worker processes):
# prometheus_client reads this variable from the environment before the first metric exists;
# here it is only made sure the folder is there (docs/scaling.md, Metrics).
PROMETHEUS_MULTIPROC_DIR = env("PROMETHEUS_MULTIPROC_DIR")
if PROMETHEUS_MULTIPROC_DIR:
    Path(PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)
ENVIRONMENT = env("ENVIRONMENT", "dev")
EVENT_PLANE = env("EVENT_PLANE", "shared")
if ENVIRONMENT not in {"dev", "staging", "prod"}:
    raise ImproperlyConfigured("ENVIRONMENT must be dev, staging or prod")
for _name, _value, _allowed in (
    ("BUDGET_NO_MATCH", BUDGET_NO_MATCH, {"allow", "deny"}),
    ("BUDGET_HOLD_EXPIRY", BUDGET_HOLD_EXPIRY, {"commit", "release"}),
):
    if _value not in _allowed:
        raise ImproperlyConfigured(f"{_name} must be one of {sorted(_allowed)}")
if RATELIMIT_DENY_STATUS not in {200, 429}:
    raise ImproperlyConfigured("RATELIMIT_DENY_STATUS must be 200 or 429")

# --- Security -------------------------------------------------------------------------------
DJANGO_SECURE = env_bool("DJANGO_SECURE", not DEBUG)
if DJANGO_SECURE:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Health checks and scrapes come from inside the network over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^budget/v1/health$", r"^budget/v1/metrics$"]
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
MAX_BODY_BYTES = 10 * 1024 * 1024
LOGIN_URL = "/approvals/login/"
# Password guessing: failed sign-ins per username and per client address.
LOGIN_THROTTLE_ATTEMPTS = int(env("LOGIN_THROTTLE_ATTEMPTS", "5"))
LOGIN_THROTTLE_WINDOW_SECONDS = int(env("LOGIN_THROTTLE_WINDOW_SECONDS", "900"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- REST framework and OpenAPI -------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "budgeting_site.platform.auth.JWTAuthentication",
        "budgeting_site.platform.auth.ApiKeyAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["budgeting_site.platform.permissions.HasRole"],
    "DEFAULT_PARSER_CLASSES": ["budgeting_site.platform.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["budgeting_site.platform.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "budgeting_site.platform.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": False,
    "DEFAULT_PAGINATION_CLASS": None,
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Budgeting, Rate-Limiting & Cost Observability API",
    "DESCRIPTION": "Budgets, rate limits, cost metering, quotas, receipts and events.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/budget/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {},
    "DISABLE_ERRORS_AND_WARNINGS": True,
    # Schema completeness is checked by `make openapi-check` (generate, validate, diff), not
    # by `check --deploy`, which is about deployment settings.
    "ENABLE_DJANGO_DEPLOY_CHECK": False,
}

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"correlation": {"()": "budgeting_site.platform.logs.CorrelationIdFilter"}},
    "formatters": {
        "json": {
            "()": "budgeting_site.platform.logs.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
        }
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["correlation"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
    },
}

VERSION = "1.0.0"
