package testkit

import (
	"os"
	"strconv"
	"strings"
	"time"
)

// MachineBusy is the busy time of all the machine's CPUs since boot: the
// first line of /proc/stat without idle and iowait (USER_HZ ticks, 10 ms
// each). Benchmarks take the difference over a run to report what the
// whole machine spent (every process and the kernel's own threads), which
// says whether a rate was bounded by the cores. It is 0 where /proc/stat
// cannot be read.
func MachineBusy() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0
	}
	var busy int64
	for i, f := range fields[1:] {
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return time.Duration(busy) * (time.Second / 100)
}
