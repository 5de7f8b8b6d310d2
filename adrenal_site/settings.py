"""Settings, all read from the environment.

Embedded default (no variables set): SQLite under ``DATA_DIR`` and a Celery broker on kombu's
filesystem transport, so ``make run`` needs no server.  Production and CI set ``DATABASE_URL``
(PostgreSQL) and ``CELERY_BROKER_URL`` (Redis).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ADRENAL_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in {"1", "true", "yes", "on"}


def env_number(name: str, default: float, kind: type = int, low: float = 0, high: float = 2**53) -> float:
    """A number from the environment variable ``name`` (``default`` when unset or empty): a whole number for
    ``kind=int``, within ``[low, high]``. ImproperlyConfigured names the variable, its value and the range, where
    ``int()``/``float()`` would stop the site with a ValueError naming neither (or take NaN, inf, -5)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not (low <= value <= high):  # NaN compares false
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name}={raw!r}: must be {what} from {low:g} to {high:g}")
    return value


DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    """SECRET_KEY from the environment; for local use (DEBUG, or ADRENAL_LOCAL_SECRET=1 as the
    Makefile sets) one is generated once and kept in DATA_DIR/secret_key."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if not (DEBUG or env_bool("ADRENAL_LOCAL_SECRET")):
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (required when DEBUG is off), "
            "or set ADRENAL_LOCAL_SECRET=1 to generate and keep one for local use."
        )
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        # the web server and the workers start together on a fresh data folder: the first to link its complete
        # file wins and everyone reads that one (a plain write let a second process read it empty or replace it)
        tmp = key_file.with_name(f".secret_key.{os.getpid()}")
        tmp.write_text(secrets.token_urlsafe(50))
        tmp.chmod(0o600)
        try:
            os.link(tmp, key_file)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = key_file.read_text().strip()
    if len(key) < 32:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"{key_file} holds no usable key ({len(key)} characters): delete it to have a new "
                                   "one generated (signed-in users will have to sign in again)")
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "adrenal_site.admin_apps.AdrenalAdminConfig",  # the Django admin, open to the admin role (README "Roles")
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our own static files (no CDN)
    "adrenal_site.accounts",
    "adrenal_site.jobs",
    "annotations",
    "inference",
    "frontend",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "adrenal_site.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "adrenal_site.cache_control.NoStoreByDefaultMiddleware",  # pages and API answers: no-store unless the view says
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "adrenal_site.query_guard.RefuseNulInQueryMiddleware",  # a NUL in a query parameter is a 400, not a DB error
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "adrenal_site.urls"
WSGI_APPLICATION = "adrenal_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "frontend" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "adrenal_site.roles.roles_context",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL lets the web server read while a worker writes; the timeout rides out short write locks.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so a Celery worker subprocess in the tests sees the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "adrenal_site.accounts.throttle.ThrottleBackend",  # refuses while an address is blocked (failed sign-ins)
    "django.contrib.auth.backends.ModelBackend",
    "adrenal_site.admin_site.RoleAdminPermissionBackend",  # the admin role holds every model permission
]
# Failed sign-ins of one username from one address (x5 for the address alone) within the window before refusing.
ADRENAL_LOGIN_MAX_FAILURES = env_number("ADRENAL_LOGIN_MAX_FAILURES", 10, int, 1, 1000000)
ADRENAL_LOGIN_WINDOW_SECONDS = env_number("ADRENAL_LOGIN_WINDOW_SECONDS", 900, int, 1, 10000000)
# The cache the sign-in counts and API throttles use: shared by every web process when it is Redis.
_cache_url = os.environ.get("ADRENAL_CACHE_URL", "")
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
          if _cache_url.startswith(("redis://", "rediss://"))
          else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    # The one storage layer every file the app and its workers share goes through (adrenal_site/storage.py):
    # a FileSystemStorage at MEDIA_ROOT (no "location" option, so it follows MEDIA_ROOT). The database and task
    # messages hold names relative to it; each host resolves them under its own MEDIA_ROOT, so a worker on
    # another machine mounts the shared filesystem anywhere and sets ADRENAL_DATA_DIR (README "Workers on other
    # machines").
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # static files work before (or without) collectstatic
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media")).resolve()  # the storage root, per host
MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
# Largest zip upload accepted by the import page, streamed to disk (bytes).
ADRENAL_MAX_UPLOAD_BYTES = env_number("ADRENAL_MAX_UPLOAD_BYTES", 4 * 1024**3, int, 1, 1125899906842624)
# Server folders admins may import from through the API (POST /api/datasets/<id>/imports/ {"path"}), separated
# by ":"; empty turns server-folder imports off. `manage.py import_studies` is not limited.
ADRENAL_IMPORT_ROOTS = [p for p in os.environ.get("ADRENAL_IMPORT_ROOTS", str(DATA_DIR / "imports")).split(":") if p]
# a zip upload may expand to 4x ADRENAL_MAX_UPLOAD_BYTES and to at most this many times its own size
ADRENAL_MAX_ZIP_RATIO = env_number("ADRENAL_MAX_ZIP_RATIO", 100, float, 1, 1000000)
# Queue a crop-box proposal job for the scans each import job brings in.
ADRENAL_AUTO_PROPOSE = env_bool("ADRENAL_AUTO_PROPOSE", True)
# A changed crop box queues a rebuild of its scan's 2.5D images (inference.services.images.rebuild_after_box_change).
ADRENAL_AUTO_REBUILD_IMAGES = env_bool("ADRENAL_AUTO_REBUILD_IMAGES", True)
# The longest side a crop box may have, mm (annotations.services.boxes.check_box).
ADRENAL_MAX_BOX_SIDE_MM = env_number("ADRENAL_MAX_BOX_SIDE_MM", 200, float, 1, 2000)
# The key patient pseudonyms are hashed with (annotations.services.importer.pseudonym_key); empty: SECRET_KEY.
ADRENAL_PSEUDONYM_KEY = os.environ.get("ADRENAL_PSEUDONYM_KEY", "")
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024**2
DATA_UPLOAD_MAX_MEMORY_SIZE = 16 * 1024**2

# --- DICOM node (inference.services.dicom_node; README "DICOM node") ----------------------------------
# The Storage SCP `manage.py dicom_listener` runs: its port and AE title, the peers allowed to associate
# ("AET@host:port,..."), seconds without a new instance after which a study is complete, the dataset it is
# imported into, and where SR and secondary captures go ("AET@host:port"; empty: back to the sending peer).
ADRENAL_DICOM_PORT = env_number("ADRENAL_DICOM_PORT", 11112, int, 0, 65535)
ADRENAL_DICOM_AET = os.environ.get("ADRENAL_DICOM_AET", "ADRENAL")
ADRENAL_DICOM_BIND = os.environ.get("ADRENAL_DICOM_BIND", "127.0.0.1")  # docker: 0.0.0.0
ADRENAL_DICOM_PEERS = os.environ.get("ADRENAL_DICOM_PEERS", "")
ADRENAL_DICOM_STABLE_SECONDS = env_number("ADRENAL_DICOM_STABLE_SECONDS", 60, float, 0, 86400)
ADRENAL_DICOM_DATASET = os.environ.get("ADRENAL_DICOM_DATASET", "Received")
ADRENAL_DICOM_RESULTS_TO = os.environ.get("ADRENAL_DICOM_RESULTS_TO", "")
ADRENAL_DICOM_SPOOL = Path(os.environ.get("ADRENAL_DICOM_SPOOL", DATA_DIR / "dicom")).resolve()
# Delivery retries: first retry after RETRY_SECONDS, doubling up to an hour, at most MAX_ATTEMPTS attempts.
ADRENAL_DICOM_RETRY_SECONDS = env_number("ADRENAL_DICOM_RETRY_SECONDS", 30, float, 0, 86400)
ADRENAL_DICOM_MAX_ATTEMPTS = env_number("ADRENAL_DICOM_MAX_ATTEMPTS", 12, int, 1, 1000)
ADRENAL_DICOM_KEY_IMAGES = env_number("ADRENAL_DICOM_KEY_IMAGES", 6, int, 0, 100)  # secondary captures per scan, at most
# Pulling for datasets (pacs_query / pacs_retrieve): the PACS as "AET@host:port", or a DICOMweb root URL.
ADRENAL_PACS = os.environ.get("ADRENAL_PACS", "")
ADRENAL_DICOMWEB_URL = os.environ.get("ADRENAL_DICOMWEB_URL", "")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes anonymous API requests 401, not 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["adrenal_site.roles.IsClinician"],
    "DEFAULT_PARSER_CLASSES": [  # JSON nested too deeply is a 400, not a RecursionError
        "adrenal_site.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "adrenal_site.api_schema.AutoSchema",  # drf-spectacular's, with the refusals
    "EXCEPTION_HANDLER": "adrenal_site.api_root.exception_handler",  # a damaged stored file: a JSON 500 naming it
    # ?limit= (1.., above api_params.MAX_PAGE_SIZE = 1000 read as 1000) and ?offset= (0..2**31-1); else a 400 naming it
    "DEFAULT_PAGINATION_CLASS": "adrenal_site.api_params.Pagination",
    "PAGE_SIZE": 200,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("ADRENAL_TOKEN_RATE", "30/min")},  # POST /api/auth/token/
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Adrenal lesion detection API",
    "DESCRIPTION": "Datasets, studies, crop boxes, 2.5D images, training runs, evaluations and verdicts.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["adrenal_site.roles.IsClinician"],
    # Swagger UI and Redoc from drf-spectacular-sidecar's static files: the docs work offline and under the CSP
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,  # request bodies as their own components (multipart uploads show files)
}

# --- Celery (read by adrenal_site/celery.py with the CELERY_ namespace) -----------------------
# The embedded default names a host: kombu warns "No hostname was supplied. Reverting to default 'localhost'" on
# every connection to a bare filesystem:// (each manage.py command that queued a job printed it); the transport
# ignores the host. (Celery reads CELERY_BROKER_URL from the environment itself when it is set there.)
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_TASK_TIME_LIMIT = env_number("CELERY_TASK_TIME_LIMIT", 6 * 3600, int, 1, 10000000)  # hard limit, s
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 300
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Embedded default: messages are files under DATA_DIR/broker, shared by the web process and workers.
    _queue_dir = Path(os.environ.get("CELERY_QUEUE_DIR", DATA_DIR / "broker"))
    for _sub in ("queue", "processed", "control"):
        (_queue_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir / "queue"),
        "data_folder_out": str(_queue_dir / "queue"),
        "processed_folder": str(_queue_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_queue_dir / "control"),  # broadcast/pidbox (inspect ping) files
    }
else:
    # Longer than the hard limit, or Redis hands a long training task to a second worker.
    # A broker that does not answer (a host gone, a firewall dropping packets) fails a send within seconds
    # (runner.send_job fails the job saying so) instead of holding the request that started it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600,
                                       "socket_connect_timeout": 5}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TIMEZONE = "UTC"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# --- Deployment (README "Configuration"): HTTPS, cookies and the Content-Security-Policy -------------------
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Off by default so `make run` works over plain http; docker/compose.yml turns them on.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 0, int, 0, 1000000000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)  # a commitment to browsers' preload lists: opt-in
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):  # behind a TLS-terminating proxy that sets X-Forwarded-Proto
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The Content-Security-Policy of every response (adrenal_site/csp.py): no inline script and no inline style;
# pages keep their code in static files and their data in json_script blocks or data- attributes.
ADRENAL_CSP = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:", "blob:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "worker-src": ["'self'", "blob:"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
