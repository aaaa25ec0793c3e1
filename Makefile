.PHONY: build test lint fuzz bench web
build:
	CGO_ENABLED=0 go build -o bin/warden ./cmd/warden
test:
	./scripts/test.sh
# staticcheck 2026.2.2 (v0.8.2), which knows Go 1.26; move it on with the Go version.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt-ed (run gofmt -w):" >&2; echo "$$unformatted" >&2; exit 1; fi
	go vet ./...
	go vet -tags integration ./...
	go run $(STATICCHECK) -tags integration ./...
fuzz:
	FUZZTIME=60s ./scripts/test.sh
bench:
	go test -tags integration -run '^$$' -bench . -benchmem ./...
	./bench/run.sh
web:
	go generate ./internal/web
.PHONY: test-unit
# The unit tier: no root, no sshd or browser (make test runs both tiers).
test-unit:
	go test ./...
