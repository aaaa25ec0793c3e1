//go:build integration

package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/warden-sh/warden/internal/audit"
)

func randomFile(t *testing.T, dir string, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "random.bin")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func (e *env) scpArgs(id identity) []string {
	return append(e.sshOpts(id), "-P", strconv.Itoa(e.addr.Port))
}

func (e *env) sftpArgs(id identity) []string {
	return append(e.sshOpts(id), "-P", strconv.Itoa(e.addr.Port))
}

func assertFile(t *testing.T, path string, want []byte, uid int) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: %d bytes differ from the %d sent", path, len(got), len(want))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); uid >= 0 && int(st.Uid) != uid {
		t.Errorf("%s owned by uid %d, want %d", path, st.Uid, uid)
	}
}

func TestSCPAndSFTPRoundTrip(t *testing.T) {
	u := ensureTestUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	e := newEnv(t)
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	local, data := randomFile(t, e.dir, 1<<20)
	remote := testUser + "@127.0.0.1:"
	t.Cleanup(func() {
		for _, n := range []string{"scp.bin", "scp-legacy.bin", "sftp.bin"} {
			os.Remove(filepath.Join(u.HomeDir, n))
		}
	})

	t.Run("scp (sftp protocol)", func(t *testing.T) {
		r := e.run(nil, "scp", append(e.scpArgs(id), local, remote+"scp.bin")...)
		if r.code != 0 {
			t.Fatalf("upload: exit %d: %s", r.code, r.stderr)
		}
		assertFile(t, filepath.Join(u.HomeDir, "scp.bin"), data, uid)
		back := filepath.Join(e.dir, "scp-back.bin")
		r = e.run(nil, "scp", append(e.scpArgs(id), remote+"scp.bin", back)...)
		if r.code != 0 {
			t.Fatalf("download: exit %d: %s", r.code, r.stderr)
		}
		assertFile(t, back, data, -1)
		e.audit.wait(t, audit.SFTP, func(ev audit.Event) bool {
			return ev.Fields["op"] == "open" && ev.Fields["path"] == filepath.Join(u.HomeDir, "scp.bin") &&
				ev.Fields["bytes_written"] == int64(1<<20) && ev.User == "alice" && ev.Login == testUser
		})
		e.audit.wait(t, audit.SFTP, func(ev audit.Event) bool {
			return ev.Fields["op"] == "open" && ev.Fields["bytes_read"] == int64(1<<20)
		})
	})

	t.Run("scp -O (legacy protocol via exec)", func(t *testing.T) {
		r := e.run(nil, "scp", append(append(e.scpArgs(id), "-O"), local, remote+"scp-legacy.bin")...)
		if r.code != 0 {
			t.Fatalf("upload: exit %d: %s", r.code, r.stderr)
		}
		assertFile(t, filepath.Join(u.HomeDir, "scp-legacy.bin"), data, uid)
		back := filepath.Join(e.dir, "legacy-back.bin")
		r = e.run(nil, "scp", append(append(e.scpArgs(id), "-O"), remote+"scp-legacy.bin", back)...)
		if r.code != 0 {
			t.Fatalf("download: exit %d: %s", r.code, r.stderr)
		}
		assertFile(t, back, data, -1)
	})

	t.Run("sftp batch", func(t *testing.T) {
		back := filepath.Join(e.dir, "sftp-back.bin")
		batch := strings.Join([]string{
			"put " + local + " sftp.bin",
			"get sftp.bin " + back,
			"mkdir sftp-dir",
			"rename sftp.bin sftp-dir/moved.bin",
			"ls -l sftp-dir",
			"rename sftp-dir/moved.bin sftp.bin",
			"rmdir sftp-dir",
			"pwd",
		}, "\n") + "\n"
		bf := filepath.Join(e.dir, "batch")
		if err := os.WriteFile(bf, []byte(batch), 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.run(nil, "sftp", append(append(e.sftpArgs(id), "-b", bf), testUser+"@127.0.0.1")...)
		if r.code != 0 {
			t.Fatalf("sftp: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
		}
		assertFile(t, filepath.Join(u.HomeDir, "sftp.bin"), data, uid)
		assertFile(t, back, data, -1)
		if !strings.Contains(r.stdout, "moved.bin") || !strings.Contains(r.stdout, u.HomeDir) {
			t.Errorf("listing/pwd missing from %q", r.stdout)
		}
		e.audit.wait(t, audit.SFTP, func(ev audit.Event) bool {
			return ev.Fields["op"] == "mkdir" && ev.Fields["path"] == filepath.Join(u.HomeDir, "sftp-dir") && ev.Success
		})
	})

	t.Run("permissions are the user's", func(t *testing.T) {
		// The child runs as the user: root-only files stay unreadable.
		r := e.run(nil, "scp", append(e.scpArgs(id), remote+"/etc/shadow", filepath.Join(e.dir, "shadow"))...)
		if r.code == 0 {
			t.Fatal("downloaded /etc/shadow as an unprivileged user")
		}
		e.audit.wait(t, audit.SFTP, func(ev audit.Event) bool {
			return ev.Fields["path"] == "/etc/shadow" && !ev.Success
		})
	})
}

func TestFileTransferDenied(t *testing.T) {
	u := ensureTestUser(t)
	e := newEnv(t)
	e.setAuthz(func(ctx context.Context, req AuthzRequest) (*Permissions, error) {
		p, _ := allowAll(ctx, req)
		p.FileTransfer = false
		return p, nil
	})
	id := e.newIdentity(certOpts{principals: []string{testUser}})
	local, _ := randomFile(t, e.dir, 1024)
	remote := testUser + "@127.0.0.1:"

	denied := filepath.Join(u.HomeDir, "denied.bin")
	os.Remove(denied)
	t.Cleanup(func() { os.Remove(denied) })
	sftpServer := "/usr/lib/openssh/sftp-server"
	if _, err := os.Stat(sftpServer); err != nil {
		t.Fatalf("OpenSSH's sftp-server is needed (apt-get install openssh-sftp-server): %v", err)
	}
	sshCmd := "ssh " + strings.Join(append(e.sshOpts(id), "-p", strconv.Itoa(e.addr.Port)), " ")
	tests := []struct {
		name  string
		tool  string
		args  []string
		event string // the audit event of the refusal
	}{
		{"scp", "scp", append(e.scpArgs(id), local, remote+"denied.bin"), audit.SFTP},
		{"scp -O", "scp", append(append(e.scpArgs(id), "-O"), local, remote+"denied.bin"), audit.Exec},
		{"sftp", "sftp", append(append(e.sftpArgs(id), "-b", "/dev/null"), testUser+"@127.0.0.1"), audit.SFTP},
		// The client chooses the server's command: any prefix.
		{"sftp -s env", "sftp", append(append(e.sftpArgs(id), "-b", "/dev/null", "-s", "env "+sftpServer), testUser+"@127.0.0.1"), audit.Exec},
		{"sftp -s quoted", "sftp", append(append(e.sftpArgs(id), "-b", "/dev/null", "-s", `exec "/usr/lib/openssh/sftp"-server`), testUser+"@127.0.0.1"), audit.Exec},
		{"sftp -s sh -c", "sftp", append(append(e.sftpArgs(id), "-b", "/dev/null", "-s", "sh -c '"+sftpServer+"'"), testUser+"@127.0.0.1"), audit.Exec},
		{"sftp -s variable", "sftp", append(append(e.sftpArgs(id), "-b", "/dev/null", "-s", "x=sftp-; /usr/lib/openssh/${x}server"), testUser+"@127.0.0.1"), audit.Exec},
		{"rsync --rsync-path", "rsync", []string{"-e", sshCmd, "--rsync-path=env rsync", local, remote + "denied.bin"}, audit.Exec},
	}
	refusal := func(ev audit.Event) bool {
		return !ev.Success && ev.Fields["refused"] == "file_transfer" && strings.Contains(ev.Error, "file transfer not allowed")
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(e.audit.find(tc.event, refusal))
			r := e.run(nil, tc.tool, tc.args...)
			if r.code == 0 {
				t.Fatalf("%s succeeded without file transfer permission", tc.name)
			}
			if !strings.Contains(r.stderr, "file transfer (scp, sftp, rsync) is not allowed by your roles") {
				t.Errorf("stderr %q lacks the reason", r.stderr)
			}
			// Audited (before the refusal is sent), with what was refused.
			evs := e.audit.find(tc.event, refusal)
			if len(evs) != before+1 {
				t.Fatalf("%d refusals audited as %s, want 1", len(evs)-before, tc.event)
			}
			t.Logf("audited: %s %v", evs[before].Error, evs[before].Fields)
		})
	}
	if _, err := os.Stat(denied); err == nil {
		t.Fatal("a refused transfer wrote its file")
	}
	// Plain commands still work.
	if r := e.ssh(id, testUser, nil, "echo ok"); r.stdout != "ok\n" {
		t.Errorf("exec: %+v", r)
	}
}
