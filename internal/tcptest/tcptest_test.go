package tcptest

import (
	"io"
	"testing"
)

func TestPairIsConnected(t *testing.T) {
	client, server := Pair(t)
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	client.CloseWrite()
	b, err := io.ReadAll(server)
	if err != nil || string(b) != "ping" {
		t.Fatalf("server read %q, %v", b, err)
	}
}
