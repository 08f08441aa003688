"""The one settings module. Every value comes from the environment (or the settings file
that deploy/up writes, ``var/appliance.env``); docs/configuration.md lists them all."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from django.conf import locale as django_locale

from appliance.env import Env, SettingError, load_env_file
from inference.catalog import DEFAULT_MODEL, spec_for

BASE_DIR = Path(__file__).resolve().parent.parent
load_env_file(Path(os.environ.get("APPLIANCE_ENV_FILE", BASE_DIR / "var" / "appliance.env")))
env = Env()

# Nothing may call home: no hub downloads, no telemetry, in every process that loads settings.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "true",
    "SCARF_NO_ANALYTICS": "true",
    "UNSTRUCTURED_TELEMETRY": "off",
    "TOKENIZERS_PARALLELISM": "false",
    # Progress bars would break the logs' one JSON object per line.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}.items():
    os.environ.setdefault(_name, _value)

# APPLIANCE_ENV_FILE names the settings file (above); it is not the *_FILE form of
# APPLIANCE_ENV, so it must not be read as one.
APPLIANCE_ENV = Env({k: v for k, v in os.environ.items() if k != "APPLIANCE_ENV_FILE"}).choice(
    "APPLIANCE_ENV", "development", ("development", "production")
)
PRODUCTION = APPLIANCE_ENV == "production"
DEBUG = env.bool("APPLIANCE_DEBUG", False)

if PRODUCTION:
    SECRET_KEY = env.str("APPLIANCE_SECRET_KEY")
    if len(SECRET_KEY) < 50:
        raise SettingError("APPLIANCE_SECRET_KEY must be at least 50 characters in production")
    ALLOWED_HOSTS = env.list("APPLIANCE_ALLOWED_HOSTS", [])
    if not ALLOWED_HOSTS:
        raise SettingError("APPLIANCE_ALLOWED_HOSTS is required in production")
else:
    SECRET_KEY = env.str("APPLIANCE_SECRET_KEY", "development-only-" + "x" * 50)
    ALLOWED_HOSTS = env.list("APPLIANCE_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "testserver"])

DATA_DIR = env.path("APPLIANCE_DATA_DIR", BASE_DIR / "var")
UPLOAD_DIR = DATA_DIR / "uploads"
MODELS_DIR = env.path("APPLIANCE_MODELS_DIR", DATA_DIR / "models")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "axes",
    "appliance.accounts",
    "appliance.audit",
    "appliance.web",
    "appliance.operations",
    "ingest",
    "inference",
    "inference.pilot",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Outside everything that may answer early, so every response carries the policy.
    "appliance.web.middleware.ContentSecurityPolicyMiddleware",
    "ingest.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page language: the browser's Accept-Language (or the language cookie) here; a
    # signed-in person's saved choice once they are known (PersonLanguageMiddleware).
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "appliance.accounts.middleware.BearerTokenMiddleware",
    "appliance.accounts.middleware.SessionTimeoutMiddleware",
    "appliance.accounts.middleware.PersonLanguageMiddleware",
    "appliance.audit.middleware.RequestContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "appliance.urls"
ASGI_APPLICATION = "appliance.asgi.application"
WSGI_APPLICATION = "appliance.wsgi.application"

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
                "appliance.web.context.appliance",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": env.str("APPLIANCE_DB_HOST", "127.0.0.1"),
        "PORT": env.int("APPLIANCE_DB_PORT", 5432),
        "NAME": env.str("APPLIANCE_DB_NAME", "appliance"),
        "USER": env.str("APPLIANCE_DB_USER", "appliance_app"),
        "PASSWORD": env.str("APPLIANCE_DB_PASSWORD", ""),
        "CONN_MAX_AGE": env.int("APPLIANCE_DB_CONN_MAX_AGE", 0 if DEBUG else 600, minimum=0),
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": env.str("APPLIANCE_DB_TEST_NAME", "test_appliance")},
    }
}
# The web process (appliance/asgi.py says so) serves each request's database work on a
# thread of its own, so Django's per-thread persistent connections would open a new
# PostgreSQL connection for every request and leave it idle behind. It borrows from a
# pool instead: bounded, and already connected.
WEB_PROCESS = os.environ.get("APPLIANCE_PROCESS") == "web"
DB_POOL_SIZE = env.int("APPLIANCE_DB_POOL_SIZE", 16, minimum=2)
if WEB_PROCESS:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "pool": {"min_size": 2, "max_size": DB_POOL_SIZE, "timeout": 10, "max_idle": 300}
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The role the running appliance uses; migrations run as the owner role
# (see docs/security.md, "Database roles").
DB_APP_ROLE = env.str("APPLIANCE_DB_APP_ROLE", "appliance_app")

REDIS_URL = env.str("APPLIANCE_REDIS_URL", "redis://127.0.0.1:6379/0")

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ask"
LOGOUT_REDIRECT_URL = "login"

# Sessions: an idle timeout (the cookie's age, renewed on each request) and an absolute one
# (checked by SessionTimeoutMiddleware), so a stolen cookie does not live forever.
SESSION_COOKIE_AGE = env.int("APPLIANCE_SESSION_IDLE_MINUTES", 30, minimum=1) * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_ABSOLUTE_SECONDS = env.int("APPLIANCE_SESSION_ABSOLUTE_HOURS", 12, minimum=1) * 3600
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

# Login throttling: lock a username from one address after repeated failures, so a proxy
# that makes everyone share one address does not lock out the whole organisation.
AXES_FAILURE_LIMIT = env.int("APPLIANCE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env.int("APPLIANCE_LOGIN_COOLOFF_MINUTES", 15, minimum=1) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_IPWARE_PROXY_COUNT = env.int("APPLIANCE_TRUSTED_PROXY_COUNT", 0, minimum=0)
AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
# The same client address as the audit log: X-Forwarded-For is believed only through the
# configured number of trusted proxies, so a client cannot pick its own address.
AXES_CLIENT_IP_CALLABLE = "appliance.audit.context.request_client_ip"
AXES_VERBOSE = False

# Audit log: manifests are signed with a key of their own (never derived from SECRET_KEY in
# production); rows older than the retention period may be pruned with `audit_prune`.
AUDIT_SIGNING_KEY = env.str("APPLIANCE_AUDIT_SIGNING_KEY", "")
if PRODUCTION and len(AUDIT_SIGNING_KEY) < 32:
    raise SettingError(
        "APPLIANCE_AUDIT_SIGNING_KEY (or APPLIANCE_AUDIT_SIGNING_KEY_FILE) of at least 32 "
        "characters is required in production"
    )
AUDIT_RETENTION_DAYS = env.int("APPLIANCE_AUDIT_RETENTION_DAYS", 7 * 365 + 2, minimum=1)
# Chat retention: questions, answers and conversations older than this many days are
# deleted by the answer workers (and `chat_prune`); 0 keeps them. A department may set a
# shorter period for its members (inference/retention.py). Audit rows stay.
CHAT_RETENTION_DAYS = env.int("APPLIANCE_CHAT_RETENTION_DAYS", 0, minimum=0)

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env.bool("APPLIANCE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env.int("APPLIANCE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    CSRF_TRUSTED_ORIGINS = env.list("APPLIANCE_CSRF_TRUSTED_ORIGINS", [])

TIME_ZONE = env.str("APPLIANCE_TIME_ZONE", "UTC")
USE_I18N = True
# The interface languages (docs/i18n.md); the catalogues are in the repository, compiled.
# APPLIANCE_LANGUAGE is the language of a browser that asks for none of them.
LANGUAGES = [("en", "English"), ("nb", "Norsk bokmål"), ("de", "Deutsch")]
LANGUAGE_CODE = env.choice("APPLIANCE_LANGUAGE", "en", tuple(code for code, _ in LANGUAGES))
LOCALE_PATHS = [BASE_DIR / "appliance" / "locale"]
# Browsers that say only "no" (Norwegian) or "nn" (Nynorsk) get Bokmål, not English.
for _code in ("no", "no-no", "nn", "nn-no"):
    _known = django_locale.LANG_INFO.get(_code, django_locale.LANG_INFO["nb"])
    django_locale.LANG_INFO[_code] = {**_known, "code": _code, "fallback": ["nb"]}
# Remembered for people who are not signed in (the sign-in page); a signed-in person's
# choice is saved on their account.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "appliance" / "web" / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not PRODUCTION

# Uploads: a clean 400/413 for requests beyond these, never a crash or a full disk.
UPLOAD_MAX_FILE_MB = env.int("APPLIANCE_UPLOAD_MAX_FILE_MB", 200, minimum=1)
UPLOAD_MAX_FILES = env.int("APPLIANCE_UPLOAD_MAX_FILES", 500, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# Each file may come with a "paths" field (its place in an uploaded folder), hence the room.
DATA_UPLOAD_MAX_NUMBER_FIELDS = max(1000, UPLOAD_MAX_FILES + 100)
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_TEMP_DIR = None
# The whole request body: a larger one gets a 413 before any file is read (the browser
# sends a folder in parts well below this).
UPLOAD_MAX_REQUEST_MB = env.int("APPLIANCE_UPLOAD_MAX_REQUEST_MB", 1024, minimum=1)
# Each file is parsed in a child process under these limits (ingest/parsing/sandbox.py).
INGEST_PARSE_TIME_LIMIT = env.int("APPLIANCE_PARSE_TIME_LIMIT_SECONDS", 900, minimum=10)
INGEST_PARSE_MEMORY_MB = env.int("APPLIANCE_PARSE_MEMORY_MB", 4096, minimum=512)
# How long a worker's hold on a document lasts unless renewed; the documents of a worker
# that died are taken over (and lost queue messages replaced) after it.
INGEST_LEASE_SECONDS = env.int("APPLIANCE_INGEST_LEASE_SECONDS", 60, minimum=5)

# --- models -------------------------------------------------------------------------------
LLM_MODEL = env.str("APPLIANCE_LLM_MODEL", DEFAULT_MODEL)
LLM_SPEC = spec_for(LLM_MODEL)
LLM_MODEL_PATH = env.path("APPLIANCE_LLM_MODEL_PATH", MODELS_DIR / LLM_SPEC.filename)
LLM_CHAT_FORMAT = env.choice(
    "APPLIANCE_LLM_CHAT_FORMAT", LLM_SPEC.chat_format, ("harmony", "template")
)
LLM_CONTEXT_TOKENS = env.int("APPLIANCE_LLM_CONTEXT_TOKENS", 8192, minimum=512)
LLM_THREADS = env.int("APPLIANCE_LLM_THREADS", os.cpu_count() or 2, minimum=1)
LLM_GPU_LAYERS = env.int("APPLIANCE_LLM_GPU_LAYERS", 0, minimum=-1)
LLM_MAX_ANSWER_TOKENS = env.int("APPLIANCE_LLM_MAX_ANSWER_TOKENS", 512, minimum=16)
LLM_TEMPERATURE = env.float(
    "APPLIANCE_LLM_TEMPERATURE", 1.0 if LLM_CHAT_FORMAT == "harmony" else 0.2
)
LLM_TOP_P = env.float("APPLIANCE_LLM_TOP_P", 1.0 if LLM_CHAT_FORMAT == "harmony" else 0.9)
# Small models loop without a little penalty; gpt-oss is sampled as OpenAI recommends.
LLM_REPEAT_PENALTY = env.float(
    "APPLIANCE_LLM_REPEAT_PENALTY", 1.0 if LLM_CHAT_FORMAT == "harmony" else 1.15
)
# A reply whose last tokens are one run of 4 to 48 tokens written this many times over is
# stopped: a small model that starts to loop would otherwise write the same sentence until
# the answer's token limit. 0 turns it off.
LLM_REPETITION_STOP = env.int("APPLIANCE_LLM_REPETITION_STOP", 3, minimum=0)
LLM_REASONING_EFFORT = env.choice(
    "APPLIANCE_LLM_REASONING_EFFORT", "low", ("low", "medium", "high")
)
LLM_STORE_REASONING = env.bool("APPLIANCE_LLM_STORE_REASONING", False)
LLM_SEED = env.int("APPLIANCE_LLM_SEED", -1)
# "local": each answer worker loads the GGUF itself (llama-cpp-python). "openai": answer
# workers send prompts to an OpenAI-compatible server (llama.cpp's llama-server with
# parallel slots, vLLM) at LLM_SERVER_URL; events and citations are the same.
LLM_BACKEND = env.choice("APPLIANCE_LLM_BACKEND", "local", ("local", "openai"))
LLM_SERVER_URL = env.str("APPLIANCE_LLM_SERVER_URL", "http://127.0.0.1:8080/v1")
LLM_SERVER_MODEL = env.str("APPLIANCE_LLM_SERVER_MODEL", LLM_MODEL)
LLM_SERVER_API_KEY = env.str("APPLIANCE_LLM_SERVER_API_KEY", "none")
LLM_SERVER_TIMEOUT_SECONDS = env.int("APPLIANCE_LLM_SERVER_TIMEOUT_SECONDS", 300, minimum=5)

# The sentence-transformers model of new collections: a folder name under MODELS_DIR or an
# absolute path. Each collection remembers the model its vectors come from (the vector
# dimension follows the model); `manage.py reembed_collection` moves a collection to this
# one after a change, answering from the old vectors until the new ones are complete.
EMBEDDING_MODEL = env.str(
    "APPLIANCE_EMBEDDING_MODEL", env.str("APPLIANCE_EMBEDDING_MODEL_PATH", "all-MiniLM-L6-v2")
)
# Ingestion embeds big batches on every core. An answer worker embeds one short question,
# on one thread, while the database works out the asker's scope on another core.
EMBEDDING_THREADS = env.int(
    "APPLIANCE_EMBEDDING_THREADS",
    1 if os.environ.get("APPLIANCE_WORKER_ROLE") == "answer" else os.cpu_count() or 2,
    minimum=1,
)
EMBEDDING_BATCH_SIZE = env.int("APPLIANCE_EMBEDDING_BATCH_SIZE", 32, minimum=1)

# --- retrieval and answers ----------------------------------------------------------------
RETRIEVAL_TOP_K = env.int("APPLIANCE_RETRIEVAL_TOP_K", 6, minimum=1)
RETRIEVAL_CANDIDATES = env.int("APPLIANCE_RETRIEVAL_CANDIDATES", 40, minimum=1)
# Hybrid retrieval (inference/retrieval.py): BM25 over the tsvector and HNSW cosine, fused by
# weighted reciprocal rank. Defaults measured on BEIR SciFact (docs/retrieval.md).
RETRIEVAL_MODE = env.choice("APPLIANCE_RETRIEVAL_MODE", "hybrid", ("hybrid", "dense", "fulltext"))
RETRIEVAL_BM25_K1 = env.float("APPLIANCE_RETRIEVAL_BM25_K1", 1.2)
RETRIEVAL_BM25_B = env.float("APPLIANCE_RETRIEVAL_BM25_B", 0.75)
RETRIEVAL_RRF_K = env.float("APPLIANCE_RETRIEVAL_RRF_K", 20.0)
RETRIEVAL_DENSE_WEIGHT = env.float("APPLIANCE_RETRIEVAL_DENSE_WEIGHT", 1.0)
RETRIEVAL_LEXICAL_WEIGHT = env.float("APPLIANCE_RETRIEVAL_LEXICAL_WEIGHT", 1.0)
RETRIEVAL_LEXICAL_BUDGET = env.int("APPLIANCE_RETRIEVAL_LEXICAL_BUDGET", 500, minimum=1)
RETRIEVAL_LEXICAL_COMMON_SHARE = env.float("APPLIANCE_RETRIEVAL_LEXICAL_COMMON_SHARE", 0.05)
RETRIEVAL_HNSW_EF_SEARCH = env.int("APPLIANCE_RETRIEVAL_HNSW_EF_SEARCH", 100, minimum=1)
RETRIEVAL_EXACT_SCAN_MAX_CHUNKS = env.int(
    "APPLIANCE_RETRIEVAL_EXACT_SCAN_MAX_CHUNKS", 5000, minimum=0
)
# Optional cross-encoder (a sentence-transformers folder) that reorders the fused candidates.
RERANKER_MODEL_PATH = env.str("APPLIANCE_RERANKER_MODEL_PATH", "")
RETRIEVAL_RERANK_DEPTH = env.int("APPLIANCE_RETRIEVAL_RERANK_DEPTH", 20, minimum=1)
RELEVANCE_FLOOR = env.float("APPLIANCE_RELEVANCE_FLOOR", 0.40)
CONTEXT_BUDGET_TOKENS = env.int("APPLIANCE_CONTEXT_BUDGET_TOKENS", 900, minimum=100)
CHUNK_TOKENS = env.int("APPLIANCE_CHUNK_TOKENS", 200, minimum=32)
CHUNK_OVERLAP_TOKENS = env.int("APPLIANCE_CHUNK_OVERLAP_TOKENS", 30, minimum=0)
ANSWER_EVENTS_TTL_SECONDS = env.int("APPLIANCE_ANSWER_EVENTS_TTL_SECONDS", 3600, minimum=60)

# --- background work ----------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "ingest"
CELERY_TASK_ROUTES = {
    "ingest.*": {"queue": "ingest"},
    "inference.*": {"queue": "answer"},
}
# Time limits stay below Redis' visibility timeout, so a task is never handed to a second
# worker while the first still runs it.
INGEST_TASK_TIME_LIMIT = env.int("APPLIANCE_INGEST_TIME_LIMIT_SECONDS", 1800, minimum=60)
ANSWER_TASK_TIME_LIMIT = env.int("APPLIANCE_ANSWER_TIME_LIMIT_SECONDS", 600, minimum=30)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": max(INGEST_TASK_TIME_LIMIT, ANSWER_TASK_TIME_LIMIT) + 600,
}
CELERY_TASK_TIME_LIMIT = INGEST_TASK_TIME_LIMIT
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False

# --- logs and metrics (docs/operations.md, "Logs" and "Metrics") -------------------------
# One JSON line per event in every process (appliance/logs.py); question and document text
# only with APPLIANCE_LOG_CONTENT=true, for debugging.
LOG_CONTENT = env.bool("APPLIANCE_LOG_CONTENT", False)
LOG_FORMAT = env.choice("APPLIANCE_LOG_FORMAT", "json", ("json", "plain"))
LOGGING_CONFIG = "appliance.logs.configure"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "appliance.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("APPLIANCE_LOG_LEVEL", "INFO")},
    "loggers": {
        "axes": {"level": "WARNING"},
        "unstructured": {"level": "WARNING"},
        "pdfminer": {"level": "ERROR"},
        # uvicorn configures its own plain-text handlers; its lines go through ours instead.
        # Its access lines are left out: RequestContextMiddleware logs each request, with
        # its request id (uvicorn writes them only while the logger has a handler).
        "uvicorn": {"handlers": ["console"], "propagate": False},
        "uvicorn.error": {"handlers": [], "propagate": True},
        "uvicorn.access": {"handlers": [], "propagate": False},
    },
}

# --- sign-in through a directory: LDAP/Active Directory and OIDC (docs/sign-in.md) --------
from appliance.sso_settings import ldap_settings, oidc_settings  # noqa: E402

globals().update(ldap_settings(env))
globals().update(oidc_settings(env))
if globals().get("AUTH_LDAP_SERVER_URI"):
    AUTHENTICATION_BACKENDS.append("appliance.accounts.ldap_backend.DirectoryLDAPBackend")
# API tokens of directory accounts are honoured for this long after the directory last
# said the account is enabled; then the directory is asked again.
DIRECTORY_RECHECK_MINUTES = env.int("APPLIANCE_DIRECTORY_RECHECK_MINUTES", 15, minimum=1)
# Counters and histograms of every process, in files the web process adds up for /metrics
# (appliance/metrics.py); /metrics answers only these addresses (anyone else: 404).
METRICS_DIR = env.path("APPLIANCE_METRICS_DIR", DATA_DIR / "run" / "metrics")
# prometheus-client chooses files or memory when it is first imported, wherever that is.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
METRICS_ALLOWED = env.list("APPLIANCE_METRICS_ALLOWED", ["127.0.0.1", "::1"])
for _address in METRICS_ALLOWED:
    try:
        ipaddress.ip_network(_address, strict=False)
    except ValueError:
        raise SettingError(
            f"APPLIANCE_METRICS_ALLOWED: {_address!r} is not an address or network "
            "(e.g. 127.0.0.1, ::1, 10.0.5.0/24)"
        ) from None
