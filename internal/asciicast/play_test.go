package asciicast

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/warden-sh/warden/internal/patience"
)

// playRecording has output at 0.5, 1, 3 (with input and a resize between),
// 13 and 13.25 seconds.
const playRecording = hdr +
	`[0.5, "o", "a"]` + "\n" +
	`[1.0, "o", "b"]` + "\n" +
	`[1.5, "i", "x"]` + "\n" +
	`[2.0, "r", "100x30"]` + "\n" +
	`[3.0, "o", "c"]` + "\n" +
	`[13.0, "o", "d"]` + "\n" +
	`[13.25, "o", "e"]` + "\n"

func TestPlayTiming(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name string
		opt  PlayOptions
		want []time.Duration
	}{
		{"real timing", PlayOptions{}, []time.Duration{500 * ms, 500 * ms, 2000 * ms, 10000 * ms, 250 * ms}},
		{"speed 4 divides", PlayOptions{Speed: 4}, []time.Duration{125 * ms, 125 * ms, 500 * ms, 2500 * ms, 62500 * time.Microsecond}},
		{"speed 0.5 doubles", PlayOptions{Speed: 0.5}, []time.Duration{1000 * ms, 1000 * ms, 4000 * ms, 20000 * ms, 500 * ms}},
		{"max idle caps", PlayOptions{MaxIdle: time.Second}, []time.Duration{500 * ms, 500 * ms, 1000 * ms, 1000 * ms, 250 * ms}},
		{"max idle before speed", PlayOptions{MaxIdle: 2 * time.Second, Speed: 2}, []time.Duration{250 * ms, 250 * ms, 1000 * ms, 1000 * ms, 125 * ms}},
		{"from skips waiting", PlayOptions{From: 2 * time.Second}, []time.Duration{1000 * ms, 10000 * ms, 250 * ms}},
		{"from exactly on event", PlayOptions{From: 3 * time.Second}, []time.Duration{10000 * ms, 250 * ms}},
		{"from with max idle", PlayOptions{From: 5 * time.Second, MaxIdle: 3 * time.Second}, []time.Duration{3000 * ms, 250 * ms}},
		{"from past the end", PlayOptions{From: time.Hour}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewReader(strings.NewReader(playRecording))
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Duration
			var out bytes.Buffer
			opt := tt.opt
			opt.Sleep = func(ctx context.Context, d time.Duration) error {
				got = append(got, d)
				return nil
			}
			if err := Play(context.Background(), r, &out, opt); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("sleeps (-want +got):\n%s", diff)
			}
			if out.String() != "abcde" {
				t.Errorf("output %q, want %q", out.String(), "abcde")
			}
		})
	}
}

func TestPlayWritesBeforeFromInstantly(t *testing.T) {
	t.Parallel()
	r, err := NewReader(strings.NewReader(playRecording))
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	out := writerFunc(func(p []byte) (int, error) {
		log = append(log, "write "+string(p))
		return len(p), nil
	})
	sleep := func(ctx context.Context, d time.Duration) error {
		log = append(log, "sleep "+d.String())
		return nil
	}
	if err := Play(context.Background(), r, out, PlayOptions{From: 2 * time.Second, Sleep: sleep}); err != nil {
		t.Fatal(err)
	}
	want := []string{"write a", "write b", "sleep 1s", "write c", "sleep 10s", "write d", "sleep 250ms", "write e"}
	if diff := cmp.Diff(want, log); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestPlayErrors(t *testing.T) {
	t.Parallel()
	noSleep := func(context.Context, time.Duration) error { return nil }
	newReader := func(s string) *Reader {
		r, err := NewReader(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, opt := range []PlayOptions{{Speed: -1}, {MaxIdle: -1}, {From: -time.Second}} {
		if err := Play(context.Background(), newReader(playRecording), &bytes.Buffer{}, opt); err == nil {
			t.Errorf("Play accepted %+v", opt)
		}
	}

	boom := errors.New("closed pipe")
	err := Play(context.Background(), newReader(playRecording), writerFunc(func([]byte) (int, error) { return 0, boom }), PlayOptions{Sleep: noSleep})
	if !errors.Is(err, boom) {
		t.Errorf("write error = %v", err)
	}

	err = Play(context.Background(), newReader(hdr+`[1, "o", "a"]`+"\n"+`[0, "o", "b"]`+"\n"), &bytes.Buffer{}, PlayOptions{Sleep: noSleep})
	var se *SyntaxError
	if !errors.As(err, &se) || se.Line != 3 {
		t.Errorf("bad recording error = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	err = Play(ctx, newReader(playRecording), &out, PlayOptions{Sleep: func(ctx context.Context, d time.Duration) error {
		cancel()
		return ctx.Err()
	}})
	if !errors.Is(err, context.Canceled) || out.Len() != 0 {
		t.Errorf("cancelled play: err %v, output %q", err, out.String())
	}
}

func TestPlayRealSleepHonorsContext(t *testing.T) {
	t.Parallel()
	r, err := NewReader(strings.NewReader(hdr + `[3600, "o", "late"]` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Play(ctx, r, &bytes.Buffer{}, PlayOptions{}) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want deadline exceeded", err)
		}
	case <-time.After(patience.Left(t)):
		t.Fatal("Play did not return after its context ended")
	}
}

func TestScaleDurationSaturates(t *testing.T) {
	t.Parallel()
	if got := scaleDuration(time.Hour, 1e-300); got <= 0 {
		t.Errorf("scaleDuration overflowed to %v", got)
	}
	if got := scaleDuration(time.Hour, 1e300); got != 0 {
		t.Errorf("scaleDuration(hour, 1e300) = %v", got)
	}
}
