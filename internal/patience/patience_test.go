package patience

import (
	"errors"
	"testing"
	"time"
)

func TestDeadlineIsBeforeTheTestTimeout(t *testing.T) {
	d := Deadline(t)
	if !d.After(time.Now()) {
		t.Fatalf("Deadline %v is not in the future", d)
	}
	if td, ok := t.Deadline(); ok && !d.Before(td) {
		t.Fatalf("Deadline %v is not before the test's -timeout %v", d, td)
	}
	ctx := Context(t)
	if cd, ok := ctx.Deadline(); !ok || cd.Sub(d).Abs() > time.Second {
		t.Fatalf("Context deadline %v, %v; want %v", cd, ok, d)
	}
	if Left(t) <= 0 {
		t.Fatal("Left is not positive")
	}
}

func TestRetry(t *testing.T) {
	n := 0
	err := Retry(t, func() error {
		if n++; n < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("Retry = %v after %d calls, want nil after 5", err, n)
	}
	if err := Retry(nil, func() error { return nil }); err != nil {
		t.Fatalf("Retry without a test = %v", err)
	}
}
