package asciicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// PlayOptions controls Play.
type PlayOptions struct {
	// Speed multiplies playback speed; 0 means 1. 2 plays twice as fast.
	Speed float64
	// MaxIdle caps every pause between output events to this much recorded
	// time (before Speed is applied, as asciinema's idle_time_limit does);
	// 0 keeps real timing. The header's idle_time_limit is not applied.
	MaxIdle time.Duration
	// From starts playback at this offset: output before it is written at
	// once, so the screen is in the right state, then timing is real. The
	// first pause is measured from From, not from the last skipped event.
	From time.Duration
	// Sleep waits for d or until ctx is done. Nil means a real timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Play writes the data of r's output events to out, pausing between them
// as recorded (scaled by Speed, capped by MaxIdle). Input, resize and
// marker events are not written and do not split pauses. It returns nil at
// the end of the recording, or the first read, write, sleep or context
// error.
func Play(ctx context.Context, r *Reader, out io.Writer, opt PlayOptions) error {
	speed := opt.Speed
	if speed == 0 {
		speed = 1
	}
	if math.IsNaN(speed) || math.IsInf(speed, 0) || speed < 0 {
		return fmt.Errorf("asciicast: play: invalid speed %v", opt.Speed)
	}
	if opt.MaxIdle < 0 || opt.From < 0 {
		return errors.New("asciicast: play: negative MaxIdle or From")
	}
	sleep := opt.Sleep
	if sleep == nil {
		sleep = sleepContext
	}
	prev := time.Duration(0) // recorded time of the last output written
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev, err := r.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("asciicast: play: %w", err)
		}
		if ev.Type != TypeOutput {
			continue
		}
		at := ev.Offset()
		if at >= opt.From {
			gap := at - max(prev, opt.From)
			if opt.MaxIdle > 0 && gap > opt.MaxIdle {
				gap = opt.MaxIdle
			}
			if d := scaleDuration(gap, speed); d > 0 {
				if err := sleep(ctx, d); err != nil {
					return err
				}
			}
		}
		prev = at
		if _, err := io.WriteString(out, ev.Data); err != nil {
			return fmt.Errorf("asciicast: play: write: %w", err)
		}
	}
}

func sleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// scaleDuration returns d/speed, saturating instead of overflowing.
func scaleDuration(d time.Duration, speed float64) time.Duration {
	f := float64(d) / speed
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	return time.Duration(f)
}
