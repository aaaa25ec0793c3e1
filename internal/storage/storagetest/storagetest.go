// Package storagetest is the conformance suite every storage.Backend driver
// must pass. A driver's test calls RunBackendConformance with a Factory
// that opens a fresh, empty backend.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warden-sh/warden/internal/patience"
	"github.com/warden-sh/warden/internal/storage"
)

// Factory opens a fresh, empty backend whose TTLs follow now. It should
// register t.Cleanup to close the backend (Close must tolerate a second
// call) and configure its expiry reaper to run often (tens of
// milliseconds), since the suite waits for reaper deletes.
type Factory func(t *testing.T, now func() time.Time) storage.Backend

// epoch is the fake clock's start; far from the real time so a backend
// that wrongly reads the wall clock fails the TTL tests.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	t     *testing.T
	b     storage.Backend
	clock *Clock
	ctx   context.Context
}

func newEnv(t *testing.T, f Factory) *env {
	t.Helper()
	clock := NewClock(epoch)
	b := f(t, clock.Now)
	if b == nil {
		t.Fatal("factory returned a nil backend")
	}
	return &env{t: t, b: b, clock: clock, ctx: t.Context()}
}

// RunBackendConformance runs the whole suite against backends from f.
func RunBackendConformance(t *testing.T, f Factory) {
	tests := []struct {
		name string
		run  func(e *env)
	}{
		{"GetPut", testGetPut},
		{"Create", testCreate},
		{"CompareAndSwap", testCompareAndSwap},
		{"Delete", testDelete},
		{"List", testList},
		{"InvalidArguments", testInvalidArguments},
		{"TTL", testTTL},
		{"ReaperDeletes", testReaperDeletes},
		{"Watch", testWatch},
		{"WatchPrefixes", testWatchPrefixes},
		{"WatchCancel", testWatchCancel},
		{"WatchEndsOnClose", testWatchEndsOnClose},
		{"ConcurrentCAS", testConcurrentCAS},
		{"RevisionsIncrease", testRevisionsIncrease},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(newEnv(t, f))
		})
	}
}

func testGetPut(e *env) {
	t := e.t
	if _, err := e.b.Get(e.ctx, "/users/alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get missing key: err = %v, want ErrNotFound", err)
	}
	p1 := mustPut(e, "/users/alice", "v1")
	if p1.Revision <= 0 {
		t.Fatalf("Put revision = %d, want > 0", p1.Revision)
	}
	checkGet(e, "/users/alice", "v1", p1.Revision)

	p2 := mustPut(e, "/users/alice", "v2")
	if p2.Revision <= p1.Revision {
		t.Fatalf("second Put revision %d not above first %d", p2.Revision, p1.Revision)
	}
	checkGet(e, "/users/alice", "v2", p2.Revision)

	// Empty and binary values round-trip exactly.
	for _, v := range [][]byte{nil, {}, {0, 1, 2, 0xff, 0}} {
		it, err := e.b.Put(e.ctx, storage.Item{Key: "/bin", Value: v})
		if err != nil {
			t.Fatalf("Put %x: %v", v, err)
		}
		got, err := e.b.Get(e.ctx, "/bin")
		if err != nil {
			t.Fatalf("Get /bin: %v", err)
		}
		if !bytes.Equal(got.Value, v) || got.Revision != it.Revision {
			t.Fatalf("Get /bin = %x rev %d, want %x rev %d", got.Value, got.Revision, v, it.Revision)
		}
	}

	// The store keeps its own copy of the value.
	buf := []byte("original")
	if _, err := e.b.Put(e.ctx, storage.Item{Key: "/alias", Value: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXX")
	checkGet(e, "/alias", "original", 0)
}

func testCreate(e *env) {
	t := e.t
	c, err := e.b.Create(e.ctx, storage.Item{Key: "/roles/admin", Value: []byte("a")})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if c.Revision <= 0 || c.Key != "/roles/admin" || string(c.Value) != "a" {
		t.Fatalf("Create returned %+v", c)
	}
	if _, err := e.b.Create(e.ctx, storage.Item{Key: "/roles/admin", Value: []byte("b")}); !errors.Is(err, storage.ErrAlreadyExists) {
		t.Fatalf("second Create: err = %v, want ErrAlreadyExists", err)
	}
	checkGet(e, "/roles/admin", "a", c.Revision)
}

func testCompareAndSwap(e *env) {
	t := e.t
	orig := mustPut(e, "/cas/x", "v1")
	tests := []struct {
		name    string
		key     string
		rev     int64
		wantErr error
	}{
		{"stale revision", "/cas/x", orig.Revision - 1, storage.ErrCompareFailed},
		{"future revision", "/cas/x", orig.Revision + 100, storage.ErrCompareFailed},
		{"zero revision", "/cas/x", 0, storage.ErrCompareFailed},
		{"missing key", "/cas/missing", 1, storage.ErrNotFound},
	}
	for _, tc := range tests {
		_, err := e.b.CompareAndSwap(e.ctx, tc.rev, storage.Item{Key: tc.key, Value: []byte("bad")})
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
	}
	checkGet(e, "/cas/x", "v1", orig.Revision)
	if _, err := e.b.Get(e.ctx, "/cas/missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("failed CAS created /cas/missing: err = %v", err)
	}

	next, err := e.b.CompareAndSwap(e.ctx, orig.Revision, storage.Item{Key: "/cas/x", Value: []byte("v2")})
	if err != nil {
		t.Fatalf("CAS at current revision: %v", err)
	}
	if next.Revision <= orig.Revision {
		t.Fatalf("CAS revision %d not above %d", next.Revision, orig.Revision)
	}
	checkGet(e, "/cas/x", "v2", next.Revision)
	// The old revision is now stale.
	if _, err := e.b.CompareAndSwap(e.ctx, orig.Revision, storage.Item{Key: "/cas/x", Value: []byte("v3")}); !errors.Is(err, storage.ErrCompareFailed) {
		t.Fatalf("CAS at replaced revision: err = %v, want ErrCompareFailed", err)
	}
}

func testDelete(e *env) {
	t := e.t
	mustPut(e, "/del/a", "1")
	mustPut(e, "/del/b", "2")
	if err := e.b.Delete(e.ctx, "/del/a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := e.b.Get(e.ctx, "/del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get deleted key: err = %v, want ErrNotFound", err)
	}
	if err := e.b.Delete(e.ctx, "/del/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete deleted key: err = %v, want ErrNotFound", err)
	}
	if err := e.b.Delete(e.ctx, "/del/never"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete missing key: err = %v, want ErrNotFound", err)
	}
	checkGet(e, "/del/b", "2", 0)
	if _, err := e.b.Create(e.ctx, storage.Item{Key: "/del/a", Value: []byte("again")}); err != nil {
		t.Fatalf("Create after Delete: %v", err)
	}
}

func testList(e *env) {
	t := e.t
	keys := []string{"/a/2", "/a/10", "/a/1", "/a/", "/a0", "/ab", "/b/1", "/a/é", "/a/z/deep"}
	for _, k := range keys {
		mustPut(e, k, "v"+k)
	}
	tests := []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"/a/", 0, []string{"/a/", "/a/1", "/a/10", "/a/2", "/a/z/deep", "/a/é"}},
		{"/a/", 2, []string{"/a/", "/a/1"}},
		{"/a/", -1, []string{"/a/", "/a/1", "/a/10", "/a/2", "/a/z/deep", "/a/é"}},
		{"/a/1", 0, []string{"/a/1", "/a/10"}},
		{"/a", 0, []string{"/a/", "/a/1", "/a/10", "/a/2", "/a/z/deep", "/a/é", "/a0", "/ab"}},
		{"/b/", 10, []string{"/b/1"}},
		{"/c/", 0, nil},
		{"", 3, []string{"/a/", "/a/1", "/a/10"}},
		{"", 0, []string{"/a/", "/a/1", "/a/10", "/a/2", "/a/z/deep", "/a/é", "/a0", "/ab", "/b/1"}},
	}
	for _, tc := range tests {
		items, err := e.b.List(e.ctx, tc.prefix, tc.limit)
		if err != nil {
			t.Fatalf("List(%q, %d): %v", tc.prefix, tc.limit, err)
		}
		var got []string
		for _, it := range items {
			got = append(got, it.Key)
			if string(it.Value) != "v"+it.Key || it.Revision <= 0 {
				t.Errorf("List(%q): item %q = %q rev %d", tc.prefix, it.Key, it.Value, it.Revision)
			}
		}
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("List(%q, %d) = %q, want %q", tc.prefix, tc.limit, got, tc.want)
		}
	}
}

func testInvalidArguments(e *env) {
	t := e.t
	tests := []struct {
		name string
		it   storage.Item
	}{
		{"empty key", storage.Item{Key: ""}},
		{"relative key", storage.Item{Key: "users/alice"}},
		{"long key", storage.Item{Key: "/" + strings.Repeat("k", storage.MaxKeyLen)}},
		{"invalid utf8", storage.Item{Key: "/bad\xff"}},
		{"nul byte", storage.Item{Key: "/bad\x00key"}},
		{"huge value", storage.Item{Key: "/huge", Value: make([]byte, storage.MaxValueSize+1)}},
	}
	for _, tc := range tests {
		ops := map[string]error{}
		_, ops["Put"] = e.b.Put(e.ctx, tc.it)
		_, ops["Create"] = e.b.Create(e.ctx, tc.it)
		_, ops["CompareAndSwap"] = e.b.CompareAndSwap(e.ctx, 1, tc.it)
		if len(tc.it.Value) == 0 {
			_, ops["Get"] = e.b.Get(e.ctx, tc.it.Key)
			ops["Delete"] = e.b.Delete(e.ctx, tc.it.Key)
		}
		for op, err := range ops {
			if !errors.Is(err, storage.ErrInvalid) {
				t.Errorf("%s with %s: err = %v, want ErrInvalid", op, tc.name, err)
			}
		}
	}
	// The largest allowed key and value are accepted.
	maxKey := "/" + strings.Repeat("k", storage.MaxKeyLen-1)
	if _, err := e.b.Put(e.ctx, storage.Item{Key: maxKey, Value: make([]byte, storage.MaxValueSize)}); err != nil {
		t.Fatalf("Put with maximum key and value: %v", err)
	}
	got, err := e.b.Get(e.ctx, maxKey)
	if err != nil || len(got.Value) != storage.MaxValueSize {
		t.Fatalf("Get maximum item: %d bytes, %v", len(got.Value), err)
	}
}

func testTTL(e *env) {
	t := e.t
	exp := e.clock.Now().Add(time.Minute)
	it, err := e.b.Put(e.ctx, storage.Item{Key: "/ttl/a", Value: []byte("a"), Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if !it.Expires.Equal(exp) {
		t.Fatalf("Put Expires = %v, want %v", it.Expires, exp)
	}
	mustPut(e, "/ttl/forever", "f")
	got, err := e.b.Get(e.ctx, "/ttl/a")
	if err != nil {
		t.Fatalf("Get before expiry: %v", err)
	}
	if !got.Expires.Equal(exp) {
		t.Fatalf("Get Expires = %v, want %v", got.Expires, exp)
	}
	if got, _ := e.b.Get(e.ctx, "/ttl/forever"); !got.Expires.IsZero() {
		t.Fatalf("item without TTL has Expires %v", got.Expires)
	}

	e.clock.Advance(59 * time.Second)
	checkGet(e, "/ttl/a", "a", it.Revision)

	e.clock.Advance(time.Second) // now == exp: expired
	if _, err := e.b.Get(e.ctx, "/ttl/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after expiry: err = %v, want ErrNotFound", err)
	}
	items, err := e.b.List(e.ctx, "/ttl/", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Key != "/ttl/forever" {
		t.Fatalf("List after expiry = %+v, want only /ttl/forever", items)
	}
	if _, err := e.b.CompareAndSwap(e.ctx, it.Revision, storage.Item{Key: "/ttl/a", Value: []byte("x")}); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("CAS after expiry: err = %v, want ErrNotFound", err)
	}
	if err := e.b.Delete(e.ctx, "/ttl/a"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Delete after expiry: err = %v, want ErrNotFound", err)
	}
	c, err := e.b.Create(e.ctx, storage.Item{Key: "/ttl/a", Value: []byte("new")})
	if err != nil {
		t.Fatalf("Create over expired item: %v", err)
	}
	if c.Revision <= it.Revision || !c.Expires.IsZero() {
		t.Fatalf("Create over expired item returned %+v", c)
	}
	e.clock.Advance(time.Hour)
	checkGet(e, "/ttl/a", "new", c.Revision)
}

func testReaperDeletes(e *env) {
	t := e.t
	ch := mustWatch(e, e.ctx, "/lease/")
	it, err := e.b.Put(e.ctx, storage.Item{Key: "/lease/n1", Value: []byte("x"), Expires: e.clock.Now().Add(10 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	keep := mustPut(e, "/lease/n2", "y")
	expectEvent(e, ch, storage.EventPut, "/lease/n1", it.Revision)
	expectEvent(e, ch, storage.EventPut, "/lease/n2", keep.Revision)

	e.clock.Advance(11 * time.Second)
	ev := recvEvent(e, ch)
	if ev.Type != storage.EventDelete || ev.Item.Key != "/lease/n1" {
		t.Fatalf("after expiry got %+v, want delete of /lease/n1", ev)
	}
	if ev.Item.Revision <= keep.Revision {
		t.Fatalf("reaper delete revision %d not above last write %d", ev.Item.Revision, keep.Revision)
	}
	checkGet(e, "/lease/n2", "y", keep.Revision)
	next := mustPut(e, "/lease/n2", "z")
	if next.Revision <= ev.Item.Revision {
		t.Fatalf("write after reap has revision %d, not above reaper's %d", next.Revision, ev.Item.Revision)
	}
	// The reaper must not emit anything for the live item.
	expectEvent(e, ch, storage.EventPut, "/lease/n2", next.Revision)
}

func testWatch(e *env) {
	t := e.t
	ch := mustWatch(e, e.ctx, "/w/")
	a1 := mustPut(e, "/w/a", "1")
	mustPut(e, "/x/a", "not watched")
	b1, err := e.b.Create(e.ctx, storage.Item{Key: "/w/b", Value: []byte("2")})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := e.b.CompareAndSwap(e.ctx, a1.Revision, storage.Item{Key: "/w/a", Value: []byte("3")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.b.Delete(e.ctx, "/w/b"); err != nil {
		t.Fatal(err)
	}
	// Failed writes produce no events.
	_, _ = e.b.Create(e.ctx, storage.Item{Key: "/w/a", Value: []byte("dup")})
	_ = e.b.Delete(e.ctx, "/w/missing")
	last := mustPut(e, "/w/c", "4")

	ev := expectEvent(e, ch, storage.EventPut, "/w/a", a1.Revision)
	if string(ev.Item.Value) != "1" {
		t.Errorf("put event value = %q, want 1", ev.Item.Value)
	}
	expectEvent(e, ch, storage.EventPut, "/w/b", b1.Revision)
	ev = expectEvent(e, ch, storage.EventPut, "/w/a", a2.Revision)
	if string(ev.Item.Value) != "3" {
		t.Errorf("CAS event value = %q, want 3", ev.Item.Value)
	}
	del := recvEvent(e, ch)
	if del.Type != storage.EventDelete || del.Item.Key != "/w/b" || del.Item.Revision <= a2.Revision || del.Item.Revision >= last.Revision {
		t.Fatalf("got %+v, want delete of /w/b between revisions %d and %d", del, a2.Revision, last.Revision)
	}
	expectEvent(e, ch, storage.EventPut, "/w/c", last.Revision)
	expectNoEvent(e, ch)
}

func testWatchPrefixes(e *env) {
	t := e.t
	all := mustWatch(e, e.ctx, "")
	users := mustWatch(e, e.ctx, "/users/")
	alice := mustWatch(e, e.ctx, "/users/alice")
	// Two prefixes on one watch: both, in commit order, nothing else.
	two, err := e.b.Watch(e.ctx, "/nodes/", "/users/alice/")
	if err != nil {
		t.Fatalf("Watch of two prefixes: %v", err)
	}
	u1 := mustPut(e, "/users/alice", "a")
	u2 := mustPut(e, "/users/alicia", "b")
	n1 := mustPut(e, "/nodes/n1", "n")
	u3 := mustPut(e, "/users/alice/devices/1", "d")

	for _, want := range []storage.Item{u1, u2, n1, u3} {
		expectEvent(e, all, storage.EventPut, want.Key, want.Revision)
	}
	for _, want := range []storage.Item{u1, u2, u3} {
		expectEvent(e, users, storage.EventPut, want.Key, want.Revision)
	}
	for _, want := range []storage.Item{u1, u3} {
		expectEvent(e, alice, storage.EventPut, want.Key, want.Revision)
	}
	for _, want := range []storage.Item{n1, u3} {
		expectEvent(e, two, storage.EventPut, want.Key, want.Revision)
	}
	for name, ch := range map[string]<-chan storage.Event{"all": all, "users": users, "alice": alice, "two": two} {
		select {
		case ev, ok := <-ch:
			t.Errorf("watcher %s: unexpected event %+v (open %v)", name, ev, ok)
		default:
		}
	}
}

func testWatchCancel(e *env) {
	ctx, cancel := context.WithCancel(e.ctx)
	ch := mustWatch(e, ctx, "/c/")
	other := mustWatch(e, e.ctx, "/c/")
	p := mustPut(e, "/c/1", "x")
	expectEvent(e, ch, storage.EventPut, "/c/1", p.Revision)
	cancel()
	expectClosed(e, ch)
	// Other watchers and writes are unaffected.
	q := mustPut(e, "/c/2", "y")
	expectEvent(e, other, storage.EventPut, "/c/1", p.Revision)
	expectEvent(e, other, storage.EventPut, "/c/2", q.Revision)

	done, cancelDone := context.WithCancel(e.ctx)
	cancelDone()
	if ch, err := e.b.Watch(done, "/c/"); err == nil {
		expectClosed(e, ch)
	}
}

func testWatchEndsOnClose(e *env) {
	t := e.t
	ch := mustWatch(e, e.ctx, "/")
	if err := e.b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	expectClosed(e, ch)
	if _, err := e.b.Put(e.ctx, storage.Item{Key: "/after", Value: []byte("x")}); err == nil {
		t.Fatal("Put after Close succeeded")
	}
}

func testConcurrentCAS(e *env) {
	t := e.t
	const workers, perWorker = 6, 15
	if _, err := e.b.Create(e.ctx, storage.Item{Key: "/counter", Value: []byte("0")}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done := 0; done < perWorker; {
				cur, err := e.b.Get(e.ctx, "/counter")
				if err != nil {
					errs <- err
					return
				}
				var n int
				if _, err := fmt.Sscan(string(cur.Value), &n); err != nil {
					errs <- fmt.Errorf("parse counter %q: %w", cur.Value, err)
					return
				}
				_, err = e.b.CompareAndSwap(e.ctx, cur.Revision, storage.Item{Key: "/counter", Value: fmt.Appendf(nil, "%d", n+1)})
				switch {
				case err == nil:
					done++
				case errors.Is(err, storage.ErrCompareFailed):
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("worker: %v", err)
	}
	checkGet(e, "/counter", fmt.Sprint(workers*perWorker), 0)
}

func testRevisionsIncrease(e *env) {
	t := e.t
	ch := mustWatch(e, e.ctx, "/")
	var last int64
	check := func(op string, rev int64) {
		t.Helper()
		if rev <= last {
			t.Fatalf("%s revision %d not above previous %d", op, rev, last)
		}
		last = rev
	}
	for i := range 5 {
		key := fmt.Sprintf("/rev/%d", i%2)
		p := mustPut(e, key, "p")
		check("Put", p.Revision)
		c, err := e.b.CompareAndSwap(e.ctx, p.Revision, storage.Item{Key: key, Value: []byte("c")})
		if err != nil {
			t.Fatal(err)
		}
		check("CompareAndSwap", c.Revision)
		if err := e.b.Delete(e.ctx, key); err != nil {
			t.Fatal(err)
		}
		cr, err := e.b.Create(e.ctx, storage.Item{Key: key, Value: []byte("n")})
		if err != nil {
			t.Fatal(err)
		}
		if cr.Revision <= c.Revision+1 {
			t.Fatalf("Create after Delete has revision %d: the delete after %d consumed none", cr.Revision, c.Revision)
		}
		check("Create", cr.Revision)
	}
	// Watch events carry the same revisions, delete included, in order.
	var prev int64
	for range 5 * 4 {
		ev := recvEvent(e, ch)
		if ev.Item.Revision <= prev {
			t.Fatalf("event %+v revision not above previous %d", ev, prev)
		}
		prev = ev.Item.Revision
	}
	if prev != last {
		t.Fatalf("last event revision %d, want %d", prev, last)
	}
}

func mustPut(e *env, key, value string) storage.Item {
	e.t.Helper()
	it, err := e.b.Put(e.ctx, storage.Item{Key: key, Value: []byte(value)})
	if err != nil {
		e.t.Fatalf("Put %q: %v", key, err)
	}
	if it.Key != key || string(it.Value) != value {
		e.t.Fatalf("Put %q returned %+v", key, it)
	}
	return it
}

// checkGet asserts key holds value and, if rev is not zero, revision rev.
func checkGet(e *env, key, value string, rev int64) {
	e.t.Helper()
	got, err := e.b.Get(e.ctx, key)
	if err != nil {
		e.t.Fatalf("Get %q: %v", key, err)
	}
	if got.Key != key || string(got.Value) != value || (rev != 0 && got.Revision != rev) {
		e.t.Fatalf("Get %q = %q rev %d, want %q rev %d", key, got.Value, got.Revision, value, rev)
	}
}

func mustWatch(e *env, ctx context.Context, prefix string) <-chan storage.Event {
	e.t.Helper()
	ch, err := e.b.Watch(ctx, prefix)
	if err != nil {
		e.t.Fatalf("Watch %q: %v", prefix, err)
	}
	return ch
}

func recvEvent(e *env, ch <-chan storage.Event) storage.Event {
	e.t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			e.t.Fatal("watch channel closed, want an event")
		}
		return ev
	case <-time.After(patience.Left(e.t)):
		e.t.Fatal("no watch event")
	}
	return storage.Event{}
}

func expectEvent(e *env, ch <-chan storage.Event, typ storage.EventType, key string, rev int64) storage.Event {
	e.t.Helper()
	ev := recvEvent(e, ch)
	if ev.Type != typ || ev.Item.Key != key || ev.Item.Revision != rev {
		e.t.Fatalf("got event type %d key %q rev %d, want type %d key %q rev %d",
			ev.Type, ev.Item.Key, ev.Item.Revision, typ, key, rev)
	}
	return ev
}

func expectNoEvent(e *env, ch <-chan storage.Event) {
	e.t.Helper()
	select {
	case ev, ok := <-ch:
		e.t.Fatalf("unexpected event %+v (channel open %v)", ev, ok)
	case <-time.After(50 * time.Millisecond):
	}
}

// expectClosed drains ch and fails unless it closes in time.
func expectClosed(e *env, ch <-chan storage.Event) {
	e.t.Helper()
	timeout := time.After(patience.Left(e.t))
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			e.t.Fatal("watch channel not closed")
		}
	}
}
