package nodeagent

import (
	"io"
	"sync/atomic"

	"golang.org/x/crypto/ssh"
)

// swapSigner is an ssh.Signer whose certificate can be replaced at run time
// (host certificate renewal) without restarting the SSH server.
type swapSigner struct {
	cur atomic.Pointer[ssh.MultiAlgorithmSigner]
}

func newSwapSigner(s ssh.Signer) (*swapSigner, error) {
	w := &swapSigner{}
	return w, w.set(s)
}

func (w *swapSigner) set(s ssh.Signer) error {
	m, ok := s.(ssh.MultiAlgorithmSigner)
	if !ok {
		var err error
		if m, err = ssh.NewSignerWithAlgorithms(s.(ssh.AlgorithmSigner), []string{s.PublicKey().Type()}); err != nil {
			return err
		}
	}
	w.cur.Store(&m)
	return nil
}

func (w *swapSigner) get() ssh.MultiAlgorithmSigner { return *w.cur.Load() }

func (w *swapSigner) PublicKey() ssh.PublicKey { return w.get().PublicKey() }

func (w *swapSigner) Sign(r io.Reader, data []byte) (*ssh.Signature, error) {
	return w.get().Sign(r, data)
}

func (w *swapSigner) SignWithAlgorithm(r io.Reader, data []byte, algo string) (*ssh.Signature, error) {
	return w.get().SignWithAlgorithm(r, data, algo)
}

func (w *swapSigner) Algorithms() []string { return w.get().Algorithms() }
