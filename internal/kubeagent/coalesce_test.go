package kubeagent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warden-sh/warden/internal/patience"
)

// tlsPair is a TLS server on loopback and a client connection to it
// dialed as the agent dials the API server (dialTLS), with the server's
// side of the connection.
func tlsPair(t *testing.T) (client *coalescingConn, server *tls.Conn, clientRaw syscall.RawConn) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "apiserver"},
		DNSNames: []string{"apiserver"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil && c.(*tls.Conn).Handshake() == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := dialTLS(&tls.Config{RootCAs: pool, ServerName: "apiserver"})(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc := <-accepted
	if sc == nil {
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { sc.Close() })
	server = sc.(*tls.Conn)
	client = c.(*coalescingConn)
	raw := client.Conn.NetConn().(*bufferedConn).Conn.(*net.TCPConn)
	clientRaw, err = raw.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return client, server, clientRaw
}

// fullRecord is a full TLS 1.3 record on the wire: header, payload,
// content type and tag.
const fullRecord = 5 + maxRecord + 1 + 16

// waitReceived waits until the client's socket holds at least n bytes.
func waitReceived(t *testing.T, rc syscall.RawConn, n int) {
	t.Helper()
	err := patience.Retry(t, func() error {
		var have int
		var ierr error
		if err := rc.Control(func(fd uintptr) { have, ierr = unix.IoctlGetInt(int(fd), unix.SIOCINQ) }); err != nil {
			return err
		}
		if ierr != nil {
			return ierr
		}
		if have < n {
			return fmt.Errorf("%d bytes received, want %d", have, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A read for a large buffer takes the records already received, not just
// one, full or not: a stream goes on to the proxy in full tunnel packets.
func TestCoalescingReadTakesReceivedRecords(t *testing.T) {
	client, server, raw := tlsPair(t)
	// Past Go's small first records (dynamic record sizing: 128 KiB).
	warm := make([]byte, 256<<10)
	go func() { _, _ = server.Write(warm) }()
	if _, err := io.ReadFull(client, make([]byte, len(warm))); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // 64 KiB: four full records
	if _, err := server.Write(data); err != nil {
		t.Fatal(err)
	}
	// Two records received (TCP's window may hold back the rest).
	waitReceived(t, raw, 2*fullRecord)
	buf := make([]byte, 32<<10)
	n, err := client.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(buf) {
		t.Fatalf("read %d bytes, want %d (two records received)", n, len(buf))
	}
	if !bytes.Equal(buf, data[:n]) {
		t.Fatal("the data read is not what was sent")
	}
	// The rest, then records smaller than full ones (as the API server
	// often sends): three taken in one read.
	rest, err := io.ReadAll(io.LimitReader(client, int64(len(data)-n)))
	if err != nil || !bytes.Equal(rest, data[n:]) {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	small := make([]byte, 10<<10)
	for i := range 3 {
		for j := range small {
			small[j] = byte(i)
		}
		if _, err := server.Write(small); err != nil {
			t.Fatal(err)
		}
	}
	waitReceived(t, raw, 3*(5+len(small)+1+16))
	if n, err = client.Read(buf); err != nil || n != 3*len(small) {
		t.Fatalf("read %d bytes, %v; want the three records received (%d bytes)", n, err, 3*len(small))
	}
	for i := range 3 {
		if part := buf[i*len(small) : (i+1)*len(small)]; !bytes.Equal(part, bytes.Repeat([]byte{byte(i)}, len(small))) {
			t.Fatalf("record %d read back wrong", i)
		}
	}
	// The server's close comes through as EOF.
	server.Close()
	if m, err := client.Read(buf); m != 0 || err != io.EOF {
		t.Fatalf("after close: %d, %v; want EOF", m, err)
	}
}

// A read of one record waits for no more, and the deadline the caller
// set is in force again after a read that took more.
func TestCoalescingReadKeepsDeadline(t *testing.T) {
	client, server, raw := tlsPair(t)
	small := []byte("event 1\n")
	if _, err := server.Write(small); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 32<<10)
	n, err := client.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], small) {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	// A full record alone: returned, no more waited for.
	warm := make([]byte, 256<<10)
	go func() { _, _ = server.Write(warm) }()
	if _, err := io.ReadFull(client, make([]byte, len(warm))); err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, maxRecord)
	if _, err := server.Write(rec); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, raw, fullRecord)
	if n, err := client.Read(buf); err != nil || n != maxRecord {
		t.Fatalf("read %d, %v; want one record", n, err)
	}
	// No deadline set: a read waits for data (the coalescing left none).
	got := make(chan error, 1)
	go func() {
		_, err := client.Read(buf)
		got <- err
	}()
	if _, err := server.Write(small); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("read after a coalescing read: %v", err)
	}
	// A deadline the caller sets still holds.
	if err := client.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
}
