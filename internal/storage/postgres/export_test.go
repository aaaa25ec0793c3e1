//go:build integration

package postgres

// PauseWatch holds the poller before its next read of the change log until
// the returned function is called.
func (b *Backend) PauseWatch() (resume func()) {
	ch := make(chan struct{})
	b.watchMu.Lock()
	b.paused = ch
	b.watchMu.Unlock()
	return func() {
		b.watchMu.Lock()
		b.paused = nil
		b.watchMu.Unlock()
		close(ch)
	}
}
