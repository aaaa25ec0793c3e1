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
	go test -run '^$$' -bench . -benchmem ./...
	./bench/run.sh
web:
	go generate ./internal/web
