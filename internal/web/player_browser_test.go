//go:build integration

package web_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/clustertest"
	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/recording"
)

// TestBrowserRecordingPlayer: a session recorded from the web terminal is
// found on the recordings page by a command typed in it, and the player
// opens at that moment: the screen shows what was there, it plays on,
// and it read the recording by ranges from near that moment, not from the
// start and not whole. Pause and seek work.
func TestBrowserRecordingPlayer(t *testing.T) {
	c := clustertest.New(t, clustertest.Options{NodeLabels: map[string]string{"env": "dev"}})
	c.ApplyRoles(roles)
	clustertest.EnsureOSUser(t, "frank")
	frank := c.AddUser("frank", []string{"dev", "auditor"}, []string{"frank"})
	b := newBrowser(t, "https://"+c.ProxyAddr())
	openTerminal(t, b, frank, "frank")
	// About 1 MB of output before the command, so that the recording
	// spans many index points.
	b.typeText("seq 1 150000; echo SEQ-$((1+1))-DONE")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("SEQ-2-DONE")`)
	b.typeText("echo FIND-ME-$((6*7))")
	b.pressEnter()
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("FIND-ME-42")`)
	b.typeText("sleep 2; exit")
	b.pressEnter()
	b.waitJS(`document.getElementById("terminal").dataset.closed === "1"`)
	rec := waitRecording(t, c, "frank")

	// Find the command; play from there.
	b.open("/web/recordings?q=" + "echo+FIND-ME")
	b.screenshot("recordings-search")
	if got := b.text("#rec-matches .match code"); !strings.Contains(got, "echo FIND-ME-$((6*7))") {
		t.Fatalf("search shows %q", got)
	}
	b.submit("#rec-matches .match a.play-at")
	b.waitJS(`document.querySelector(".xterm-rows") && document.querySelector(".xterm-rows").textContent.includes("FIND-ME-42")`)
	// The screen was rebuilt from the output just before the moment.
	if got := eval[string](b, `document.querySelector(".xterm-rows").textContent`); !strings.Contains(got, "149999") {
		t.Fatalf("the screen at the moment does not show the output before it: %q", got)
	}
	b.waitJS(`document.getElementById("player").dataset.state === "ended"`)
	b.screenshot("player")
	ranges := eval[string](b, `document.getElementById("player").dataset.ranges`)
	var read int64
	for i, r := range strings.Split(ranges, ",") {
		from, to, _ := strings.Cut(r, "-")
		f, _ := strconv.ParseInt(from, 10, 64)
		e, _ := strconv.ParseInt(to, 10, 64)
		if i == 0 && f == 0 {
			t.Fatalf("the player read from the start (ranges %s)", ranges)
		}
		read += e - f + 1
	}
	if read > rec.Length/2 {
		t.Fatalf("the player read %d of %d bytes (ranges %s) at %s", read, rec.Length, ranges, b.location())
	}

	// Seek back to the start: the screen is the first prompt again. Play
	// (at half speed) and pause.
	eval[bool](b, `(() => { const s = document.getElementById("seek"); s.value = 0; s.dispatchEvent(new Event("change")); return true; })()`)
	b.waitJS(`!document.querySelector(".xterm-rows").textContent.includes("FIND-ME-42")`)
	b.waitJS(`document.getElementById("player").dataset.state === "paused"`)
	eval[bool](b, `(document.getElementById("speed").value = "0.5") === "0.5"`)
	eval[bool](b, `(document.getElementById("play").click(), true)`)
	b.waitJS(`document.getElementById("player").dataset.state === "playing"`)
	eval[bool](b, `(document.getElementById("play").click(), true)`)
	b.waitJS(`document.getElementById("player").dataset.state === "paused"`)

	// The command search inside the player jumps to the moment too.
	b.fill("#cmd-q", "FIND-ME-42")
	eval[bool](b, `(document.getElementById("cmd-search").requestSubmit(), true)`)
	b.waitJS(`document.querySelector("#cmd-results .hit") !== null`)
	eval[bool](b, `(document.querySelector("#cmd-results .hit").click(), true)`)
	b.waitJS(`document.querySelector(".xterm-rows").textContent.includes("FIND-ME-42")`)

	// A byte changed in the stored recording: the player's range reads of
	// that block are refused with the reason; the other blocks still read.
	cast := filepath.Join(c.DataDir, "recordings", rec.SessionID+".cast")
	data, err := os.ReadFile(cast)
	if err != nil {
		t.Fatal(err)
	}
	data[recording.BlockSize+10] ^= 0x20
	if err := os.WriteFile(cast, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rangeStatus := func(from, to int) string {
		return eval[string](b, fmt.Sprintf(`(() => { const x = new XMLHttpRequest();
			x.open("GET", "/web/recordings/%s/cast", false); x.setRequestHeader("Range", "bytes=%d-%d"); x.send();
			return x.status + " " + (x.status === 206 ? "" : x.responseText); })()`, rec.SessionID, from, to))
	}
	if got := rangeStatus(0, 1000); got != "206 " {
		t.Fatalf("range of an intact block: %s", got)
	}
	if got := rangeStatus(recording.BlockSize-100, recording.BlockSize+100); !strings.HasPrefix(got, "409 ") || !strings.Contains(got, "altered") {
		t.Fatalf("range of the edited block: %s", got)
	}
}

// waitRecording waits until user's recording is complete.
func waitRecording(t *testing.T, c *clustertest.Cluster, user string) recording.Info {
	t.Helper()
	deadline := patience.Deadline(t)
	for {
		list, err := c.Admin.ListRecordings(context.Background(), user, "", time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range list {
			if in.Complete {
				return in
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no complete recording of %s: %+v", user, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
