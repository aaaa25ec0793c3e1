package node

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// osUser is a resolved local account that sessions run as.
type osUser struct {
	Name   string
	UID    uint32
	GID    uint32
	Groups []uint32
	Home   string
	Shell  string
}

// passwdEntry is one parsed /etc/passwd line.
type passwdEntry struct {
	Name  string
	UID   uint32
	GID   uint32
	Home  string
	Shell string
}

// parsePasswdLine parses "name:pw:uid:gid:gecos:home:shell".
func parsePasswdLine(line string) (passwdEntry, error) {
	var e passwdEntry
	f := strings.Split(strings.TrimRight(line, "\r\n"), ":")
	if len(f) != 7 {
		return e, errors.New("passwd: want 7 fields")
	}
	if f[0] == "" || strings.HasPrefix(f[0], "+") || strings.HasPrefix(f[0], "-") {
		return e, errors.New("passwd: invalid name")
	}
	uid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return e, fmt.Errorf("passwd: uid: %w", err)
	}
	gid, err := strconv.ParseUint(f[3], 10, 32)
	if err != nil {
		return e, fmt.Errorf("passwd: gid: %w", err)
	}
	return passwdEntry{Name: f[0], UID: uint32(uid), GID: uint32(gid), Home: f[5], Shell: f[6]}, nil
}

// lookupShell finds name's login shell in /etc/passwd, then via getent
// (for NSS sources such as LDAP). It returns "" when unknown.
func lookupShell(ctx context.Context, name string) string {
	if data, err := os.ReadFile("/etc/passwd"); err == nil {
		if sh := shellFromPasswd(data, name); sh != "" {
			return sh
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "getent", "passwd", name).Output()
	if err != nil {
		return ""
	}
	return shellFromPasswd(out, name)
}

func shellFromPasswd(data []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		e, err := parsePasswdLine(sc.Text())
		if err == nil && e.Name == name {
			return e.Shell
		}
	}
	return ""
}

// resolveLogin looks up login as a local account. When the node does not run
// as root it can only serve its own account. The returned error is safe to
// show the user.
func (s *Server) resolveLogin(ctx context.Context, login string) (*osUser, error) {
	if s.uid != 0 && login != s.procUser {
		return nil, fmt.Errorf("node runs as %s and cannot switch to login %s", s.procUser, login)
	}
	u, err := user.Lookup(login)
	if err != nil {
		return nil, fmt.Errorf("login %q does not exist on node %q", login, s.cfg.NodeName)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("login %q has no numeric uid/gid on node %q", login, s.cfg.NodeName)
	}
	ou := &osUser{Name: u.Username, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				ou.Groups = append(ou.Groups, uint32(n))
			}
		}
	}
	ou.Shell = lookupShell(ctx, login)
	if ou.Shell == "" {
		ou.Shell = "/bin/sh"
	}
	if strings.HasSuffix(ou.Shell, "/nologin") || strings.HasSuffix(ou.Shell, "/false") {
		return nil, fmt.Errorf("login %q has no login shell on node %q", login, s.cfg.NodeName)
	}
	return ou, nil
}

// defaultPath is PATH for sessions, like Debian's /etc/login.defs.
func defaultPath(uid uint32) string {
	if uid == 0 {
		return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	return "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games"
}

// workDir is the user's home if it is a directory, else "/".
func (u *osUser) workDir() string {
	if fi, err := os.Stat(u.Home); err == nil && fi.IsDir() {
		return u.Home
	}
	return "/"
}

// baseEnv is the environment every process of the session starts with.
func (u *osUser) baseEnv() []string {
	return []string{
		"HOME=" + u.Home,
		"USER=" + u.Name,
		"LOGNAME=" + u.Name,
		"SHELL=" + u.Shell,
		"PATH=" + defaultPath(u.UID),
	}
}

// sysProcAttr returns process attributes that drop to u when the node runs
// as root. setsid makes the process a session leader (for PTYs); otherwise
// it gets its own process group so that signals reach its children.
func (s *Server) sysProcAttr(u *osUser, setsid bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{}
	if setsid {
		a.Setsid = true
	} else {
		a.Setpgid = true
	}
	if s.uid == 0 {
		a.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
		if len(u.Groups) == 0 {
			a.Credential.Groups = []uint32{u.GID}
		}
	}
	return a
}

// shellArgv0 is the argv[0] of a login shell: "-bash" for /bin/bash.
func shellArgv0(shell string) string {
	return "-" + filepath.Base(shell)
}
