package quickack

import (
	"io"
	"net"
	"syscall"
	"testing"
)

func TestWrapSetsQuickAck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hello"))
			c.Close()
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(raw)
	if _, ok := c.(*conn); !ok {
		t.Fatalf("TCP connection not wrapped: %T", c)
	}
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "hello" {
		t.Fatalf("read %q %v", b, err)
	}
	// The option was set on the socket (reading it back works while the
	// socket is open; the kernel may already have cleared it, so only the
	// call's success is checked).
	rc, _ := raw.(*net.TCPConn).SyscallConn()
	var gerr error
	rc.Control(func(fd uintptr) { _, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpQuickAck) })
	if gerr != nil {
		t.Fatalf("TCP_QUICKACK not supported: %v", gerr)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("a non-TCP connection was wrapped")
	}
}
