package sshclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// CopyOptions control Upload and Download.
type CopyOptions struct {
	Recursive bool      // copy directories and their contents
	Quiet     bool      // no progress lines
	Progress  io.Writer // one line per copied file, unless Quiet or nil
}

// Upload copies local files (and, with Recursive, directories) to remotePath
// over SFTP, like scp: with several sources, or when remotePath is an
// existing directory, each source lands inside it under its own name;
// otherwise the single source is copied to remotePath. File modes (permission
// bits) are preserved. A relative remotePath, "" and "~/..." are relative to
// the remote home directory. Problems with single entries do not stop the
// others; they are all returned together.
func Upload(ctx context.Context, client *ssh.Client, localPaths []string, remotePath string, opt CopyOptions) error {
	if len(localPaths) == 0 {
		return errors.New("upload: no files given")
	}
	c, err := newCopier(ctx, client, opt)
	if err != nil {
		return err
	}
	defer c.close()
	remotePath = remoteRel(remotePath)
	st, err := c.sc.Stat(remotePath)
	intoDir := err == nil && st.IsDir()
	if len(localPaths) > 1 && !intoDir {
		return fmt.Errorf("upload: remote %s is not a directory", remotePath)
	}
	for _, src := range localPaths {
		if c.aborted(ctx) {
			break
		}
		dst := remotePath
		if intoDir {
			abs, err := filepath.Abs(src)
			if err != nil {
				c.fail(fmt.Errorf("%s: %w", src, err))
				continue
			}
			dst = path.Join(remotePath, filepath.Base(abs))
		}
		c.upload(ctx, src, dst, true)
	}
	return c.result(ctx)
}

// Download copies remote files (and, with Recursive, directories) to
// localPath, with the same rules as Upload in the other direction. Names
// the server lists inside a directory are checked so that a hostile server
// cannot write outside localPath.
func Download(ctx context.Context, client *ssh.Client, remotePaths []string, localPath string, opt CopyOptions) error {
	if len(remotePaths) == 0 {
		return errors.New("download: no files given")
	}
	if localPath == "" {
		localPath = "."
	}
	c, err := newCopier(ctx, client, opt)
	if err != nil {
		return err
	}
	defer c.close()
	st, err := os.Stat(localPath)
	intoDir := err == nil && st.IsDir()
	if len(remotePaths) > 1 && !intoDir {
		return fmt.Errorf("download: %s is not a directory", localPath)
	}
	for _, src := range remotePaths {
		if c.aborted(ctx) {
			break
		}
		src = remoteRel(src)
		dst := localPath
		if intoDir {
			name, err := c.remoteBase(src)
			if err != nil {
				c.fail(err)
				continue
			}
			dst = filepath.Join(localPath, name)
		}
		c.download(ctx, src, dst, true)
	}
	return c.result(ctx)
}

// copier carries the SFTP session and the errors of one Upload or Download.
type copier struct {
	sc   *sftp.Client
	opt  CopyOptions
	stop func() bool
	errs []error
	dead error // set when going on is pointless (connection lost)
}

func newCopier(ctx context.Context, client *ssh.Client, opt CopyOptions) (*copier, error) {
	if client == nil {
		return nil, errors.New("copy: not connected")
	}
	sc, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return nil, fmt.Errorf("start sftp: %w", err)
	}
	// Closing the SFTP client makes every pending operation fail, which is
	// how ctx cancellation reaches a transfer in progress.
	stop := context.AfterFunc(ctx, func() { sc.Close() })
	return &copier{sc: sc, opt: opt, stop: stop}, nil
}

func (c *copier) close() {
	c.stop()
	c.sc.Close()
}

func (c *copier) fail(err error) {
	if errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.ErrUnexpectedEOF) {
		c.dead = err
	}
	c.errs = append(c.errs, err)
}

func (c *copier) aborted(ctx context.Context) bool { return ctx.Err() != nil || c.dead != nil }

func (c *copier) result(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return errors.Join(c.errs...)
}

func (c *copier) progress(name string, n int64, start time.Time) {
	if c.opt.Quiet || c.opt.Progress == nil {
		return
	}
	secs := time.Since(start).Seconds()
	rate := ""
	if secs > 0 {
		rate = "  " + humanBytes(int64(float64(n)/secs)) + "/s"
	}
	fmt.Fprintf(c.opt.Progress, "%s  %s%s\n", name, humanBytes(n), rate)
}

// upload copies the local src to the remote dst. top is true for the paths
// the user named: symlinks to directories are followed there but skipped
// deeper down, so a link loop cannot recurse forever.
func (c *copier) upload(ctx context.Context, src, dst string, top bool) {
	if c.aborted(ctx) {
		return
	}
	st, err := os.Stat(src)
	if err != nil {
		c.fail(fmt.Errorf("%s: %w", src, unwrapPath(err)))
		return
	}
	switch {
	case st.IsDir() && !c.opt.Recursive:
		c.fail(fmt.Errorf("%s: is a directory (copy directories with -r)", src))
	case st.IsDir() && !top && isSymlink(src):
		c.fail(fmt.Errorf("%s: skipped a symbolic link to a directory", src))
	case st.IsDir():
		c.uploadDir(ctx, src, dst, st.Mode())
	case st.Mode().IsRegular():
		if err := c.uploadFile(src, dst, st.Mode()); err != nil {
			c.fail(err)
		}
	default:
		c.fail(fmt.Errorf("%s: not a regular file", src))
	}
}

func (c *copier) uploadDir(ctx context.Context, src, dst string, mode fs.FileMode) {
	if st, err := c.sc.Stat(dst); err == nil {
		if !st.IsDir() {
			c.fail(fmt.Errorf("remote %s exists and is not a directory", dst))
			return
		}
	} else if err := c.sc.Mkdir(dst); err != nil {
		c.fail(fmt.Errorf("create remote directory %s: %w", dst, err))
		return
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		c.fail(fmt.Errorf("%s: %w", src, unwrapPath(err)))
	}
	for _, e := range entries {
		c.upload(ctx, filepath.Join(src, e.Name()), path.Join(dst, e.Name()), false)
	}
	// Set the mode last: a read-only directory must first be filled.
	if err := c.sc.Chmod(dst, mode.Perm()); err != nil {
		c.fail(fmt.Errorf("set mode of remote %s: %w", dst, err))
	}
}

func (c *copier) uploadFile(src, dst string, mode fs.FileMode) error {
	start := time.Now()
	lf, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("%s: %w", src, unwrapPath(err))
	}
	defer lf.Close()
	rf, err := c.sc.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("create remote %s: %w", dst, err)
	}
	n, err := io.Copy(rf, lf)
	if err != nil {
		rf.Close()
		return fmt.Errorf("upload %s to %s: %w", src, dst, err)
	}
	// Chmod after create: the remote umask applies to the create.
	if err := rf.Chmod(mode.Perm()); err != nil {
		rf.Close()
		return fmt.Errorf("set mode of remote %s: %w", dst, err)
	}
	if err := rf.Close(); err != nil {
		return fmt.Errorf("upload %s to %s: %w", src, dst, err)
	}
	c.progress(src, n, start)
	return nil
}

// download copies the remote src to the local dst; top as for upload.
func (c *copier) download(ctx context.Context, src, dst string, top bool) {
	if c.aborted(ctx) {
		return
	}
	st, err := c.sc.Stat(src)
	if err != nil {
		c.fail(fmt.Errorf("remote %s: %w", src, err))
		return
	}
	switch {
	case st.IsDir() && !c.opt.Recursive:
		c.fail(fmt.Errorf("remote %s: is a directory (copy directories with -r)", src))
	case st.IsDir() && !top && c.remoteIsSymlink(src):
		c.fail(fmt.Errorf("remote %s: skipped a symbolic link to a directory", src))
	case st.IsDir():
		c.downloadDir(ctx, src, dst, st.Mode())
	case st.Mode().IsRegular():
		if err := c.downloadFile(src, dst, st.Mode()); err != nil {
			c.fail(err)
		}
	default:
		c.fail(fmt.Errorf("remote %s: not a regular file", src))
	}
}

func (c *copier) downloadDir(ctx context.Context, src, dst string, mode fs.FileMode) {
	if st, err := os.Stat(dst); err == nil {
		if !st.IsDir() {
			c.fail(fmt.Errorf("%s exists and is not a directory", dst))
			return
		}
	} else if err := os.Mkdir(dst, 0o700); err != nil {
		c.fail(fmt.Errorf("create directory: %w", err))
		return
	}
	entries, err := c.sc.ReadDirContext(ctx, src)
	if err != nil {
		c.fail(fmt.Errorf("list remote %s: %w", src, err))
	}
	for _, e := range entries {
		name := e.Name()
		if !safeName(name) {
			c.fail(fmt.Errorf("remote %s: refused unsafe entry name %q", src, name))
			continue
		}
		c.download(ctx, path.Join(src, name), filepath.Join(dst, name), false)
	}
	if err := os.Chmod(dst, mode.Perm()); err != nil {
		c.fail(fmt.Errorf("set mode: %w", err))
	}
}

func (c *copier) downloadFile(src, dst string, mode fs.FileMode) error {
	start := time.Now()
	rf, err := c.sc.Open(src)
	if err != nil {
		return fmt.Errorf("open remote %s: %w", src, err)
	}
	defer rf.Close()
	lf, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm()|0o200)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	n, err := io.Copy(lf, rf)
	if err != nil {
		lf.Close()
		return fmt.Errorf("download %s to %s: %w", src, dst, err)
	}
	if err := lf.Chmod(mode.Perm()); err != nil {
		lf.Close()
		return fmt.Errorf("set mode: %w", err)
	}
	if err := lf.Close(); err != nil {
		return fmt.Errorf("download %s to %s: %w", src, dst, err)
	}
	c.progress(src, n, start)
	return nil
}

func (c *copier) remoteIsSymlink(p string) bool {
	st, err := c.sc.Lstat(p)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

// remoteBase is the name a remote source gets inside a local directory.
func (c *copier) remoteBase(src string) (string, error) {
	name := path.Base(path.Clean(src))
	if safeName(name) {
		return name, nil
	}
	real, err := c.sc.RealPath(src)
	if err != nil {
		return "", fmt.Errorf("remote %s: %w", src, err)
	}
	name = path.Base(real)
	if !safeName(name) {
		return "", fmt.Errorf("remote %s: cannot name a local copy of it", src)
	}
	return name, nil
}

// safeName reports whether a single path element from the server may be
// used as a local file name.
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && name != "/" &&
		!strings.ContainsAny(name, "/\x00") && !strings.ContainsRune(name, filepath.Separator)
}

// remoteRel turns scp-style remote paths into SFTP paths: "" and "~" are the
// home directory, "~/x" is x relative to it (OpenSSH's sftp-server resolves
// relative paths against the home directory).
func remoteRel(p string) string {
	switch {
	case p == "" || p == "~":
		return "."
	case strings.HasPrefix(p, "~/"):
		if rest := strings.TrimLeft(p[2:], "/"); rest != "" {
			return rest
		}
		return "."
	}
	return p
}

func isSymlink(p string) bool {
	st, err := os.Lstat(p)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

// unwrapPath drops the *PathError wrapper whose path the message already has.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
