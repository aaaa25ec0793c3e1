package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/warden-sh/warden/internal/storage"
)

// stateCache keeps the records CurrentCaller reads on every API call and
// every Kubernetes request (user records and access requests) in memory,
// so that the current-state check is a map lookup rather than a storage
// read. It never serves a record older than the current state as this
// process knows it:
//
//   - every write through this auth server (the backend auth uses is
//     wrapped, so no write path can forget) drops the key from the cache
//     before the write returns to its caller;
//   - a write by another auth server sharing the storage drops it when
//     the storage watch delivers the change (the same delay as for roles
//     and locks);
//   - while the watch is down (broken, re-establishing) nothing is served
//     from the cache, and it starts empty again when the watch is back;
//   - a read that raced with any invalidation is not cached (gen).
//
// Locks are not cached here: the lock cache already is in memory and
// checked on every call.
type stateCache struct {
	b   storage.Backend
	log *slog.Logger
	now func() time.Time

	mu sync.Mutex
	// live: the watch is up, so cached entries are current.
	live  bool
	gen   uint64
	items map[string]*cacheEntry

	cancel context.CancelFunc
	done   chan struct{}
}

// cacheEntry is a cached item and, once decoded, its value (shared by
// every reader: read only).
type cacheEntry struct {
	it  storage.Item
	val any
}

// cachedPrefixes are the prefixes stateCache holds.
var cachedPrefixes = []string{prefixUsers, prefixRequests}

// maxCachedItems bounds the cache; when it is full it starts over.
const maxCachedItems = 1 << 16

func cachedKey(key string) bool {
	for _, p := range cachedPrefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func newStateCache(b storage.Backend, log *slog.Logger, now func() time.Time) *stateCache {
	return &stateCache{b: b, log: log, now: now, items: map[string]*cacheEntry{}}
}

// start watches the cached prefixes; it returns once the first watch is
// established (or failed: then the cache stays off until a retry works).
func (c *stateCache) start(ctx context.Context) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.done = make(chan struct{})
	ch, err := c.b.Watch(ctx, cachedPrefixes[0], cachedPrefixes[1:]...)
	if err == nil {
		c.setLive(true)
	}
	go func() {
		defer close(c.done)
		for {
			if ch != nil {
				for ev := range ch {
					c.invalidate(ev.Item.Key)
				}
				// Changes may be missed until the watch is back.
				c.setLive(false)
			}
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				c.log.Warn("state cache: watch failed, retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			ch, err = c.b.Watch(ctx, cachedPrefixes[0], cachedPrefixes[1:]...)
			if err == nil {
				c.setLive(true)
			} else {
				ch = nil
			}
		}
	}()
}

func (c *stateCache) stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
}

func (c *stateCache) setLive(live bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = live
	c.gen++
	clear(c.items)
}

// invalidate drops key (before a write's result is returned, and for
// every change the watch delivers).
func (c *stateCache) invalidate(key string) {
	if !cachedKey(key) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.items, key)
}

// get returns the item at key, and its decoded value when an earlier
// reader stored one (setValue), from the cache; or reads it from storage
// (caching it when nothing changed meanwhile and the watch is up).
func (c *stateCache) get(ctx context.Context, key string) (storage.Item, any, error) {
	c.mu.Lock()
	e, ok := c.items[key]
	live, gen := c.live, c.gen
	c.mu.Unlock()
	if ok && (e.it.Expires.IsZero() || c.now().Before(e.it.Expires)) {
		return e.it, e.val, nil
	}
	it, err := c.b.Get(ctx, key)
	if err != nil || !live || !cachedKey(key) {
		return it, nil, err
	}
	c.mu.Lock()
	if c.gen == gen && c.live {
		if len(c.items) >= maxCachedItems {
			clear(c.items)
		}
		c.items[key] = &cacheEntry{it: it}
	}
	c.mu.Unlock()
	return it, nil, nil
}

// setValue keeps v, decoded from the item at key of revision rev, for the
// next readers (if that item is still the cached one).
func (c *stateCache) setValue(key string, rev int64, v any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.items[key]; ok && e.it.Revision == rev && e.val == nil {
		e.val = v
	}
}

// cachedValue is the value of type T stored at key, decoded once per
// revision. The value is shared: callers must not change it (currentUser
// and currentRequest hand out copies).
func cachedValue[T any](ctx context.Context, c *stateCache, key string) (*T, error) {
	it, val, err := c.get(ctx, key)
	if err != nil {
		return nil, err
	}
	if v, ok := val.(*T); ok {
		return v, nil
	}
	v := new(T)
	if err := json.Unmarshal(it.Value, v); err != nil {
		return nil, err
	}
	c.setValue(key, it.Revision, v)
	return v, nil
}

// cachingBackend is the backend auth uses: every write of a cached key
// invalidates it in the state cache before returning, whatever its result
// (a failed compare-and-swap means the cached copy may be old).
type cachingBackend struct {
	storage.Backend
	cache *stateCache
}

func (b cachingBackend) Create(ctx context.Context, it storage.Item) (storage.Item, error) {
	defer b.cache.invalidate(it.Key)
	return b.Backend.Create(ctx, it)
}

func (b cachingBackend) Put(ctx context.Context, it storage.Item) (storage.Item, error) {
	defer b.cache.invalidate(it.Key)
	return b.Backend.Put(ctx, it)
}

func (b cachingBackend) CompareAndSwap(ctx context.Context, rev int64, it storage.Item) (storage.Item, error) {
	defer b.cache.invalidate(it.Key)
	return b.Backend.CompareAndSwap(ctx, rev, it)
}

func (b cachingBackend) Delete(ctx context.Context, key string) error {
	defer b.cache.invalidate(key)
	return b.Backend.Delete(ctx, key)
}
