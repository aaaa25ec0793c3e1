package node

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// sftpReporter writes operation reports as JSON lines. Write errors are
// ignored: the parent may have stopped reading, and a report must never
// break a transfer.
type sftpReporter struct {
	mu sync.Mutex
	w  io.Writer
}

func newSFTPReporter(w io.Writer) *sftpReporter { return &sftpReporter{w: w} }

func (r *sftpReporter) report(rep sftpReport) {
	if r == nil || r.w == nil {
		return
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return
	}
	b = append(b, '\n')
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(b)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// sftpFS serves the local file system to pkg/sftp's request server. It runs
// in the child process with the user's credentials, so the kernel enforces
// permissions.
type sftpFS struct {
	rep *sftpReporter
}

// auditedFile counts bytes and reports one "open" operation on close.
type auditedFile struct {
	*os.File
	rep           *sftpReporter
	path          string
	read, written atomic.Int64
	once          sync.Once
}

func (f *auditedFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.read.Add(int64(n))
	return n, err
}

func (f *auditedFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.written.Add(int64(n))
	return n, err
}

func (f *auditedFile) Close() error {
	err := f.File.Close()
	f.once.Do(func() {
		f.rep.report(sftpReport{Op: "open", Path: f.path, Read: f.read.Load(), Write: f.written.Load(), Error: errString(err)})
	})
	return err
}

func (fs *sftpFS) open(r *sftp.Request, flag int) (*auditedFile, error) {
	pf := r.Pflags()
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// O_APPEND is not passed on: the client sends explicit offsets and Go
	// refuses WriteAt on append-only files.
	mode := os.FileMode(0o644)
	if r.AttrFlags().Permissions {
		mode = r.Attributes().FileMode().Perm()
	}
	f, err := os.OpenFile(r.Filepath, flag, mode)
	if err != nil {
		fs.rep.report(sftpReport{Op: "open", Path: r.Filepath, Error: errString(err)})
		return nil, err
	}
	return &auditedFile{File: f, rep: fs.rep, path: r.Filepath}, nil
}

// Fileread implements sftp.FileReader.
func (fs *sftpFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return fs.open(r, os.O_RDONLY)
}

// Filewrite implements sftp.FileWriter.
func (fs *sftpFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return fs.open(r, os.O_WRONLY)
}

// OpenFile implements sftp.OpenFileWriter.
func (fs *sftpFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	return fs.open(r, os.O_RDWR)
}

// Filecmd implements sftp.FileCmder.
func (fs *sftpFS) Filecmd(r *sftp.Request) error {
	var err error
	op := ""
	switch r.Method {
	case "Setstat":
		op = "setstat"
		err = setstat(r)
	case "Rename":
		op = "rename"
		// SFTP v3 rename must not replace an existing file.
		if _, lerr := os.Lstat(r.Target); lerr == nil {
			err = os.ErrExist
		} else {
			err = os.Rename(r.Filepath, r.Target)
		}
	case "Rmdir":
		op = "rmdir"
		err = syscall.Rmdir(r.Filepath)
	case "Remove":
		op = "remove"
		err = syscall.Unlink(r.Filepath)
	case "Mkdir":
		op = "mkdir"
		mode := os.FileMode(0o755)
		if r.AttrFlags().Permissions {
			mode = r.Attributes().FileMode().Perm()
		}
		err = os.Mkdir(r.Filepath, mode)
	case "Link":
		op = "link"
		err = os.Link(r.Filepath, r.Target)
	case "Symlink":
		// pkg/sftp: Filepath is the link's target, Target the new link.
		op = "symlink"
		err = os.Symlink(r.Filepath, r.Target)
	default:
		return sftp.ErrSSHFxOpUnsupported
	}
	if err != nil {
		err = &os.PathError{Op: op, Path: r.Filepath, Err: unwrapPathErr(err)}
	}
	rep := sftpReport{Op: op, Path: r.Filepath, Error: errString(err)}
	if r.Method == "Rename" || r.Method == "Link" || r.Method == "Symlink" {
		rep.Target = r.Target
	}
	fs.rep.report(rep)
	return err
}

// PosixRename implements sftp.PosixRenameFileCmder (rename replacing the
// target, used by OpenSSH clients).
func (fs *sftpFS) PosixRename(r *sftp.Request) error {
	err := os.Rename(r.Filepath, r.Target)
	fs.rep.report(sftpReport{Op: "posix-rename", Path: r.Filepath, Target: r.Target, Error: errString(err)})
	return err
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func setstat(r *sftp.Request) error {
	fl := r.AttrFlags()
	a := r.Attributes()
	if fl.Size {
		if err := os.Truncate(r.Filepath, int64(a.Size)); err != nil {
			return err
		}
	}
	if fl.Permissions {
		if err := os.Chmod(r.Filepath, a.FileMode().Perm()|a.FileMode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)); err != nil {
			return err
		}
	}
	if fl.UidGid {
		if err := os.Chown(r.Filepath, int(a.UID), int(a.GID)); err != nil {
			return err
		}
	}
	if fl.Acmodtime {
		if err := os.Chtimes(r.Filepath, time.Unix(int64(a.Atime), 0), time.Unix(int64(a.Mtime), 0)); err != nil {
			return err
		}
	}
	return nil
}

// listerAt serves a fixed list of FileInfos.
type listerAt []os.FileInfo

func (l listerAt) ListAt(out []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(out, l[off:])
	if off+int64(n) >= int64(len(l)) {
		return n, io.EOF
	}
	return n, nil
}

// Filelist implements sftp.FileLister.
func (fs *sftpFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	switch r.Method {
	case "List":
		entries, err := os.ReadDir(r.Filepath)
		if err != nil {
			return nil, err
		}
		infos := make([]os.FileInfo, 0, len(entries))
		for _, e := range entries {
			if fi, err := e.Info(); err == nil {
				infos = append(infos, fi)
			}
		}
		return listerAt(infos), nil
	case "Stat":
		fi, err := os.Stat(r.Filepath)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	default:
		return nil, sftp.ErrSSHFxOpUnsupported
	}
}

// Lstat implements sftp.LstatFileLister.
func (fs *sftpFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := os.Lstat(r.Filepath)
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

// Readlink implements sftp.ReadlinkFileLister.
func (fs *sftpFS) Readlink(p string) (string, error) {
	return os.Readlink(p)
}
