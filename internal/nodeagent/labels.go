package nodeagent

import (
	"context"
	"fmt"
	"maps"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// LabelCommand is a dynamic label: the trimmed output of a command, re-run
// every Period (e.g. kernel = `uname -r`).
type LabelCommand struct {
	Name    string        `yaml:"name"`
	Command []string      `yaml:"command"`
	Period  time.Duration `yaml:"period"`
}

// ParseLabelCommand parses the --label-cmd form NAME=PERIOD:COMMAND, e.g.
// "kernel=1m:uname -r".
func ParseLabelCommand(s string) (LabelCommand, error) {
	name, rest, ok := strings.Cut(s, "=")
	if !ok || name == "" {
		return LabelCommand{}, fmt.Errorf("label command %q must look like NAME=PERIOD:COMMAND (e.g. kernel=1m:uname -r)", s)
	}
	period, cmdline, ok := strings.Cut(rest, ":")
	if !ok {
		return LabelCommand{}, fmt.Errorf("label command %q must look like NAME=PERIOD:COMMAND (e.g. kernel=1m:uname -r)", s)
	}
	d, err := time.ParseDuration(period)
	if err != nil || d < time.Second {
		return LabelCommand{}, fmt.Errorf("label command %q: period must be a duration of at least 1s", s)
	}
	args := strings.Fields(cmdline)
	if len(args) == 0 {
		return LabelCommand{}, fmt.Errorf("label command %q has no command", s)
	}
	return LabelCommand{Name: name, Command: args, Period: d}, nil
}

// dynamicLabels keeps static labels plus the latest command outputs.
type dynamicLabels struct {
	static map[string]string
	mu     sync.RWMutex
	values map[string]string
}

func newDynamicLabels(static map[string]string) *dynamicLabels {
	return &dynamicLabels{static: static, values: map[string]string{}}
}

func (d *dynamicLabels) get() map[string]string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := maps.Clone(d.static)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, d.values)
	return out
}

const maxLabelValue = 256

// run refreshes one command's label until ctx ends.
func (d *dynamicLabels) run(ctx context.Context, lc LabelCommand, onErr func(error)) {
	period := lc.Period
	if period <= 0 {
		period = time.Minute
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, min(period, 30*time.Second))
		out, err := exec.CommandContext(cctx, lc.Command[0], lc.Command[1:]...).Output()
		cancel()
		v := strings.TrimSpace(string(out))
		if len(v) > maxLabelValue {
			v = v[:maxLabelValue]
		}
		if err != nil {
			v = "error"
			onErr(fmt.Errorf("label command %s: %w", lc.Name, err))
		}
		d.mu.Lock()
		d.values[lc.Name] = v
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}
