// Package sshtest reads the algorithms an SSH peer offers (its KEXINIT) and
// checks them against what Warden allows, for tests of every SSH server and
// client Warden runs.
package sshtest

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// KexInit is what a peer offers in its first SSH_MSG_KEXINIT (RFC 4253
// 7.1).
type KexInit struct {
	Cookie                  [16]byte `sshtype:"20"`
	KexAlgos                []string
	ServerHostKeyAlgos      []string
	CiphersClientServer     []string
	CiphersServerClient     []string
	MACsClientServer        []string
	MACsServerClient        []string
	CompressionClientServer []string
	CompressionServerClient []string
	LanguagesClientServer   []string
	LanguagesServerClient   []string
	FirstKexFollows         bool
	Reserved                uint32
}

// ServerKexInit connects to an SSH server and returns its KEXINIT.
func ServerKexInit(addr string) (*KexInit, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "SSH-2.0-sshtest\r\n"); err != nil {
		return nil, err
	}
	return ReadKexInit(c)
}

// ReadKexInit reads the peer's version line and its KEXINIT from c (either
// side of a connection: the peer's first packet is always its KEXINIT).
func ReadKexInit(c io.Reader) (*KexInit, error) {
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("read version: %w", err)
		}
		if strings.HasPrefix(line, "SSH-") {
			break
		}
	}
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read packet: %w", err)
	}
	length, padding := binary.BigEndian.Uint32(hdr[:4]), uint32(hdr[4])
	if length > 64<<10 || padding+1 > length {
		return nil, errors.New("bad packet length")
	}
	body := make([]byte, length-1)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("read packet: %w", err)
	}
	var k KexInit
	if err := ssh.Unmarshal(body[:len(body)-int(padding)], &k); err != nil {
		return nil, fmt.Errorf("parse KEXINIT: %w", err)
	}
	return &k, nil
}

// Allowed algorithms: modern only (post-quantum hybrid or X25519 key
// exchange, AEAD ciphers, encrypt-then-MAC SHA-2 MACs, Ed25519 or RSA-SHA2
// host keys). The pseudo-algorithms mark extensions.
var (
	allowedKex = []string{
		"mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
		"kex-strict-s-v00@openssh.com", "kex-strict-c-v00@openssh.com", "ext-info-s", "ext-info-c",
	}
	allowedCiphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"}
	allowedMACs    = []string{"hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"}
	allowedHostKey = []string{
		"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com",
		"rsa-sha2-256", "rsa-sha2-512", "rsa-sha2-256-cert-v01@openssh.com", "rsa-sha2-512-cert-v01@openssh.com",
	}
)

// Weak lists every algorithm k offers outside the allowed ones, as
// "kind name" (e.g. "kex ecdh-sha2-nistp256"). Host key algorithms are
// checked when server is true.
func Weak(k *KexInit, server bool) []string {
	var weak []string
	check := func(kind string, offered, allowed []string) {
		for _, a := range offered {
			if !slices.Contains(allowed, a) && !slices.Contains(weak, kind+" "+a) {
				weak = append(weak, kind+" "+a)
			}
		}
	}
	check("kex", k.KexAlgos, allowedKex)
	check("cipher", k.CiphersClientServer, allowedCiphers)
	check("cipher", k.CiphersServerClient, allowedCiphers)
	check("mac", k.MACsClientServer, allowedMACs)
	check("mac", k.MACsServerClient, allowedMACs)
	if server {
		check("hostkey", k.ServerHostKeyAlgos, allowedHostKey)
	}
	return weak
}
