.PHONY: build test lint fuzz bench web
build:
	CGO_ENABLED=0 go build -o bin/warden ./cmd/warden
test:
	./scripts/test.sh
lint:
	gofmt -l . && go vet ./...
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
