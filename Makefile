# playgate: the single entry point. `make run` and `make test` are the
# contract with a new user (see README.md).

SHELL := /bin/bash
GO    ?= go
TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

VERSITYGW_VERSION   := v1.8.0
STATICCHECK_VERSION := v0.8.2

# Debian packages the stack and its tests need, and a file each installs.
APT_PACKAGES := postgresql:/usr/lib/postgresql ffmpeg:/usr/bin/ffmpeg nginx:/usr/sbin/nginx curl:/usr/bin/curl systemd:/usr/bin/systemd-analyze \
	libnginx-mod-http-js:/usr/lib/nginx/modules/ngx_http_js_module.so chromium:/usr/bin/chromium

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: node-deps update-hls all run test unit lint fmt deps apt-deps tools build clean bench bench-signer bench-origin

all: build

## run: set up and start everything on this machine (Ctrl-C stops it); EDGE=1 adds the nginx edge
# Built, not `go run`: go run exits 1 when Ctrl-C reaches it, whatever
# the launcher's own status, so make would report a clean stop as an error.
run: deps
	$(GO) build -o .data/bin/local ./deploy/local
	EDGE=$(EDGE) .data/bin/local

## test: the whole suite, with lint, against real PostgreSQL, S3 and ffmpeg
test: deps lint unit

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

## lint: gofmt, go vet and staticcheck must be clean
lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

build:
	$(GO) build -o bin/ ./api ./signer ./origin

## bench-signer: the cache-hot signer against a bare constant-302 handler, same wrk, same run
bench-signer: deps
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq wrk
	$(GO) run ./bench/signerbench

## bench-origin: the origin against nginx on the same files (segments, 1 MiB ranges), same wrk, same run
bench-origin: deps
	@command -v wrk >/dev/null || $(SUDO) apt-get install -y -qq wrk
	$(GO) run ./bench/originbench

## bench: start the stack with its edge, run bench signer, origin and play against it; reports in .data/bench/
bench: deps
	bash bench/all.sh

## deps: install whatever is missing (Debian packages, pinned Go tools, the browser test's npm packages)
deps: apt-deps tools node-deps

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  pkg=$${p%%:*}; file=$${p#*:}; \
	  [ -e "$$file" ] || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Node runs the browser test (playwright-core driving Debian's chromium);
# its packages are pinned by the lockfile.
node-deps:
	@command -v node >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm; }
	@[ -d deploy/e2e/player/node_modules/playwright-core ] || (cd deploy/e2e/player && npm ci --no-audit --no-fund --loglevel=error)

tools: $(TOOLS)/versitygw $(TOOLS)/staticcheck

$(TOOLS)/versitygw:
	GOBIN=$(TOOLS) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## update-hls: refresh the hls.js build the api serves from the pinned npm package
update-hls:
	cd deploy/e2e/player && npm ci --no-audit --no-fund
	cp deploy/e2e/player/node_modules/hls.js/dist/hls.light.min.js api/player/static/
	cp deploy/e2e/player/node_modules/hls.js/LICENSE api/player/static/hls.js.LICENSE

clean:
	rm -rf bin
