package node

import (
	"strings"
	"testing"
)

func TestFileTransferCommand(t *testing.T) {
	refused := []string{
		// What clients send.
		"scp -t /tmp",
		"scp -f file",
		"/usr/bin/scp -v -p -t -- /x",
		"scp -pt .",
		"rsync --server -vlogDtpre.iLsfxC . /x",
		"/usr/lib/openssh/sftp-server",
		// sftp -s, scp -S, rsync --rsync-path: any prefix.
		"env /usr/lib/openssh/sftp-server",
		"env -i PATH=/bin /usr/lib/openssh/sftp-server -e",
		"exec /usr/lib/openssh/sftp-server",
		"nice -n 5 /usr/lib/sftp-server",
		"sudo rsync --server -vlogDtpre.iLsfxC . /x",
		"env scp -t /tmp",
		"timeout 60 scp -t /tmp",
		"true; scp -t /tmp",
		"true && rsync --server . /x",
		"cd / || scp -f /etc/passwd",
		"echo x | scp -t /tmp",
		"(scp -t /tmp)",
		"{ scp -t /tmp; }",
		"if true; then scp -t /tmp; fi",
		"f() { scp -t /tmp; }; f",
		"x=$(scp -t /tmp)",
		"echo `scp -f /x`",
		// Quoting and escapes.
		`"/usr/lib/openssh/sftp-server"`,
		`'/usr/lib/openssh/sftp-server'`,
		`/usr/lib/openssh/s\ftp-server`,
		`/usr/lib/openssh/"sftp"-server`,
		`/usr/lib/openssh/sf''tp-server`,
		`$'/usr/lib/openssh/\x73ftp-server'`,
		`"scp" -t /tmp`,
		`s\cp -t /tmp`,
		`scp "-t" /tmp`,
		`r'sync' --server . /x`,
		// Braces and globs.
		"/usr/lib/openssh/sftp-{server,x}",
		"/usr/lib/openssh/sftp-serv*",
		"/usr/lib/openssh/s?tp-server",
		"/usr/lib/openssh/sftp-serve[r]",
		"/usr/bin/sc? -t /tmp",
		"cd /usr/lib/openssh; ./sftp*",
		// Nested code.
		"sh -c /usr/lib/openssh/sftp-server",
		"sh -c 'scp -t /tmp'",
		`bash -c "rsync --server . /x"`,
		`sh -c "sh -c 'scp -t /tmp'"`,
		"eval 'scp -t /tmp'",
		"su -c 'scp -t /tmp' me",
		"env -S 'scp -t /tmp'",
		"sh <<EOF\nscp -t /tmp\nEOF",
		"perl -e 'exec \"/usr/lib/openssh/sftp-server\"'",
		"python3 -c 'import os; os.execv(\"/usr/lib/openssh/sftp-server\", [\"x\"])'",
		"x=/usr/lib/openssh/sftp-server; $x",
		"ln -s /usr/lib/openssh/sftp-server /tmp/x && /tmp/x",
		// Program names computed at run time.
		"$X",
		"${X}",
		"x=sftp-; /usr/lib/openssh/${x}server",
		"$(printf /usr/lib/openssh/sftp-%s server)",
		"`echo scp` -t /tmp",
		"env $X -t /tmp",
		"sh -c \"$CMD\"",
		"exec \"$@\"",
		// Other servers.
		"rclone serve sftp --stdio",
		"borg serve --restrict-to-path /x",
		"unison -server",
		// Not parseable.
		"echo 'unterminated",
		"if then fi",
	}
	for _, cmd := range refused {
		if what, ok := fileTransferCommand(cmd); !ok {
			t.Errorf("fileTransferCommand(%q) allowed it", cmd)
		} else if what == "" {
			t.Errorf("fileTransferCommand(%q): no reason", cmd)
		}
	}
	allowed := []string{
		"",
		"ls -la",
		"echo scp -t",
		"scp --help",
		"scp file other:",
		"rsync -a /a /b",
		"uptime; df -h",
		"echo $HOME",
		"cd \"$HOME\" && ls",
		"ls *",
		"env | sort",
		"sh -c 'echo hello; uptime'",
		"git-upload-pack '/srv/repo.git'",
		"/bin/sh -c 'echo ~ && sleep 0'",
		"sudo -n true",
		"sh -c 'echo it (works'",
		"for f in a b; do echo $f; done",
		"grep -r rsync /etc",
		"printf '%s\\n' \"$PATH\"",
	}
	for _, cmd := range allowed {
		if what, ok := fileTransferCommand(cmd); ok {
			t.Errorf("fileTransferCommand(%q) refused it: %s", cmd, what)
		}
	}
}

// FuzzFileTransferCommand: any input is answered without a panic, a hang
// or an unbounded parse, and a command that plainly runs sftp-server is
// refused whatever comes before it.
func FuzzFileTransferCommand(f *testing.F) {
	for _, s := range []string{"scp -t /tmp", "env /usr/lib/openssh/sftp-server", "sh -c 'sh -c \"x\"'",
		"a=$(b) ${c:-d} `e` <<EOF\nf\nEOF", "{a,b}{c,d} [x]* ?", "$'\\x41' \"$@\"", "echo 'x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cmd string) {
		_, _ = fileTransferCommand(cmd)
		if strings.ContainsAny(cmd, "\\'\"$`{}*?[]#\n") {
			return
		}
		if _, ok := fileTransferCommand(cmd + "; /usr/lib/openssh/sftp-server"); !ok {
			t.Fatalf("%q; sftp-server allowed", cmd)
		}
	})
}

func TestParseSFTPReport(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{`{"op":"open","path":"/a","read":1,"write":2}`, true},
		{`{"op":"mkdir","path":"/d","error":"exists"}`, true},
		{`{"op":"open","path":"/a","read":-1}`, false},
		{`{"op":"exec","path":"/a"}`, false},
		{`not json`, false},
	}
	for _, tc := range tests {
		_, err := parseSFTPReport([]byte(tc.line))
		if (err == nil) != tc.ok {
			t.Errorf("parseSFTPReport(%s) err=%v, want ok=%v", tc.line, err, tc.ok)
		}
	}
}
