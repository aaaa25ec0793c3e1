package node

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupDiscovery(t *testing.T) {
	dir := t.TempDir()
	mountinfo := filepath.Join(dir, "mountinfo")
	cgroup := filepath.Join(dir, "cgroup")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A hybrid layout (cpu a v1 controller, v2 in "unified"), as on this
	// project's CI machines.
	write(mountinfo, `22 1 0:20 / /sys rw,nosuid - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
`)
	v2, v1cpu, err := cgroupMounts(mountinfo)
	if err != nil || v2 != "/sys/fs/cgroup/unified" || v1cpu != "/sys/fs/cgroup/cpu,cpuacct" {
		t.Fatalf("hybrid mounts: %q %q %v", v2, v1cpu, err)
	}
	write(cgroup, "3:cpuset:/\n2:cpu,cpuacct:/system.slice/warden.service\n0::/system.slice/warden.service\n")
	p2, p1, err := ownCgroups(cgroup)
	if err != nil || p2 != "/system.slice/warden.service" || p1 != "/system.slice/warden.service" {
		t.Fatalf("hybrid cgroups: %q %q %v", p2, p1, err)
	}

	// Unified only.
	write(mountinfo, "31 22 0:27 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate\n")
	if v2, v1cpu, err := cgroupMounts(mountinfo); err != nil || v2 != "/sys/fs/cgroup" || v1cpu != "" {
		t.Fatalf("v2 mounts: %q %q %v", v2, v1cpu, err)
	}
	// v1 only: no v2 path, refused.
	write(cgroup, "2:cpu,cpuacct:/\n1:name=systemd:/\n")
	if _, _, err := ownCgroups(cgroup); err == nil {
		t.Fatal("a process without a cgroup v2 path was accepted")
	}
}
