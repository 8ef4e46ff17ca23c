# jobqueue: `make run` starts everything on SQLite, `make test` checks everything.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# PostgreSQL used by `make test` (its test database is test_<name>).
PG_TEST_URL ?= postgres://postgres@127.0.0.1:5432/jobqueue
# Set REQUIRE_POSTGRES=1 to fail instead of skipping when PostgreSQL is down (CI does).
REQUIRE_POSTGRES ?= 0
# MariaDB (or MySQL) used by `make test` (its test database is test_<name>).
MYSQL_TEST_URL ?= mysql://root@127.0.0.1:3306/jobqueue
# Set REQUIRE_MYSQL=1 to fail instead of skipping when MariaDB is down (CI does).
REQUIRE_MYSQL ?= 0
# Set REQUIRE_BROWSER=1 to fail instead of skipping the browser tests when Chromium is missing (CI does).
REQUIRE_BROWSER ?= 0
export REQUIRE_BROWSER

.PHONY: run test lint test-sqlite test-postgres test-mysql check bench bench-mariadb bench-admin bench-admin-10m bench-purge bench-stats \
	bench-vacuum bench-pooler screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# MariaDB/MySQL's driver (mysqlclient) compiles against libmysqlclient: Debian's
# default-libmysqlclient-dev, pkg-config and a C compiler. Only for mysql:// URLs.
$(VENV)/.mysql: requirements-mysql.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-mysql.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-mysql.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime $(VENV)/.mysql

# Create the MariaDB/MySQL database a URL names, if missing (utf8mb4, binary collation);
# fails when the server cannot be reached.
MYSQL_CREATE = $(BIN)/python -c "import MySQLdb, sys, urllib.parse as u; \
	p = u.urlsplit(sys.argv[1]); \
	c = MySQLdb.connect(host=p.hostname, port=p.port or 3306, user=u.unquote(p.username or 'root'), \
		password=u.unquote(p.password or ''), connect_timeout=3); \
	c.cursor().execute('CREATE DATABASE IF NOT EXISTS \`%s\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin' % p.path.strip('/'))"

# `make run` with DATABASE_URL=mysql://... installs the MySQL driver too.
RUN_DEPS := $(VENV)/.runtime $(if $(filter mysql://% mysql2://% mariadb://%,$(DATABASE_URL)),$(VENV)/.mysql)

run: $(RUN_DEPS)
	@case "$(DATABASE_URL)" in mysql://*|mysql2://*|mariadb://*) $(MYSQL_CREATE) '$(DATABASE_URL)';; esac
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py bootstrap
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

check: $(VENV)/.dev
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

test-sqlite: $(VENV)/.dev
	$(BIN)/pytest $(PYTEST_ARGS)

test-postgres: $(VENV)/.dev
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL)'.rsplit('/',1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== PostgreSQL tests ($(PG_TEST_URL))"; \
		DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$(REQUIRE_POSTGRES)" = "1" ]; then \
		echo "PostgreSQL is not reachable at $(PG_TEST_URL) and REQUIRE_POSTGRES=1" >&2; exit 1; \
	else \
		echo "== PostgreSQL not reachable at $(PG_TEST_URL): PostgreSQL tests SKIPPED"; \
	fi

test-mysql: $(VENV)/.dev
	@# The database itself must exist too: Django's checks on MySQL read the server's settings.
	@if $(MYSQL_CREATE) '$(MYSQL_TEST_URL)' 2>/dev/null; then \
		echo "== MariaDB/MySQL tests ($(MYSQL_TEST_URL))"; \
		DATABASE_URL=$(MYSQL_TEST_URL) $(BIN)/pytest $(PYTEST_ARGS); \
	elif [ "$(REQUIRE_MYSQL)" = "1" ]; then \
		echo "MariaDB is not reachable at $(MYSQL_TEST_URL) and REQUIRE_MYSQL=1" >&2; exit 1; \
	else \
		echo "== MariaDB not reachable at $(MYSQL_TEST_URL): MariaDB tests SKIPPED"; \
	fi

test: lint check
	@echo "== SQLite tests"
	$(MAKE) test-sqlite
	$(MAKE) test-postgres
	$(MAKE) test-mysql

bench: $(VENV)/.dev
	$(BIN)/python -m bench

# The MariaDB rows (drain with runworker's defaults and tuned, pickup latency, enqueue,
# the 1M-row ratio; 2,000 jobs a drain) on the server at BENCH_MYSQL_URL (default
# mysql://root@127.0.0.1:3306/); writes docs/benchmarks-mariadb.md.
bench-mariadb: $(VENV)/.dev
	$(BIN)/python -m bench drain latency enqueue scale --db mysql --output docs/benchmarks-mariadb.md

# The admin at 1,000,000 jobs on PostgreSQL (BENCH_DATABASE_URL, default jobqueue_bench): load, time
# pages; writes docs/admin-scale.md.
bench-admin: $(VENV)/.dev
	$(BIN)/python -m bench.admin_scale

# The same at 10,000,000 jobs (loaded into the bare table, indexes built after); writes
# docs/admin-scale-10m.md.
bench-admin-10m: $(VENV)/.dev
	$(BIN)/python -m bench.admin_scale --rows 10000000 --output docs/admin-scale-10m.md

# Purge 1,000,000 finished jobs while two workers drain new ones; writes docs/purge.md.
bench-purge: $(VENV)/.dev
	$(BIN)/python -m bench.purge

# Autovacuum on 10,000,000 finished jobs under a steady stream of jobs, PostgreSQL's defaults
# against per-table settings, in a private cluster on BENCH_VACUUM_PORT; writes docs/vacuum.md.
BENCH_VACUUM_PORT ?= 19100
bench-vacuum: $(VENV)/.dev
	$(BIN)/python -m bench.vacuum --port $(BENCH_VACUUM_PORT)

# GET /api/stats on 1,000,000 jobs; writes docs/stats.md.
bench-stats: $(VENV)/.dev
	$(BIN)/python -m bench.stats

# 100 workers drain 100,000 jobs through a private PgBouncer (transaction mode, 20 server connections).
bench-pooler: $(VENV)/.dev
	$(BIN)/python -m bench.pooler

# Regenerate docs/screenshots/ from the browser tests (needs /usr/bin/chromium).
screenshots: $(VENV)/.dev
	SCREENSHOT_DIR=docs/screenshots REQUIRE_BROWSER=1 $(BIN)/pytest -q -m browser tests/test_browser.py

clean:
	rm -rf $(VENV) staticfiles test_db.sqlite3* build dist *.egg-info
