package tokencache

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type entry struct {
	until   time.Time
	revoked bool
}

func (e *entry) StillValid(now time.Time) bool { return !e.revoked && now.Before(e.until) }

func TestGetPut(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New[*entry](10, func() time.Time { return now })
	e := &entry{until: now.Add(time.Minute)}
	c.Put("a", e)
	if got, ok := c.Get("a"); !ok || got != e {
		t.Fatal("stored entry not served")
	}
	if _, ok := c.Get("b"); ok {
		t.Fatal("unknown key served")
	}
	now = now.Add(time.Minute)
	if _, ok := c.Get("a"); ok {
		t.Fatal("expired entry served")
	}
	if c.Len() != 0 {
		t.Fatal("expired entry kept after its lookup")
	}
	c.Put("x", &entry{until: now})
	if c.Len() != 0 {
		t.Fatal("stored an entry that is already invalid")
	}
	r := &entry{until: now.Add(time.Hour)}
	c.Put("r", r)
	r.revoked = true
	if _, ok := c.Get("r"); ok {
		t.Fatal("served an entry that says it is no longer valid")
	}
	c.Put(strings.Repeat("k", MaxKeyBytes+1), &entry{until: now.Add(time.Hour)})
	if c.Len() != 0 {
		t.Fatal("stored an oversized key")
	}
}

func TestNilCache(t *testing.T) {
	c := New[*entry](0, time.Now)
	if c != nil {
		t.Fatal("size 0 makes a cache")
	}
	c.Put("a", &entry{until: time.Now().Add(time.Hour)})
	if _, ok := c.Get("a"); ok || c.Len() != 0 {
		t.Fatal("nil cache holds entries")
	}
}

// TestBoundReachedExactly: concurrent distinct keys fill the cache to its size, never past it.
func TestBoundReachedExactly(t *testing.T) {
	for _, size := range []int{1, 10, 64, 1000} {
		now := time.Now()
		c := New[*entry](size, func() time.Time { return now })
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				for i := range 3 * size {
					c.Put(fmt.Sprintf("token-signature-%d-%d", i, w), &entry{until: now.Add(time.Hour)})
				}
			})
		}
		wg.Wait()
		if got := c.Len(); got != size {
			t.Errorf("size %d: %d entries", size, got)
		}
	}
}

// TestGetBytes: a key stored as a string is found from its bytes, in whichever shard it fell,
// without allocating; an expired one is dropped.
func TestGetBytes(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New[*entry](10000, func() time.Time { return now }) // no shard fills up
	e := &entry{until: now.Add(time.Minute)}
	keys := make([][]byte, 50)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("sha256:%032d", i*7919))
		c.Put(string(keys[i]), e)
	}
	for _, k := range keys {
		if got, ok := c.GetBytes(k); !ok || got != e {
			t.Fatalf("GetBytes(%q) did not find the entry Put stored", k)
		}
	}
	if _, ok := c.GetBytes([]byte("sha256:unknown")); ok {
		t.Fatal("unknown key served")
	}
	if n := testing.AllocsPerRun(100, func() { c.GetBytes(keys[3]) }); n != 0 {
		t.Errorf("GetBytes allocates %v times", n)
	}
	now = now.Add(time.Minute)
	if _, ok := c.GetBytes(keys[0]); ok || c.Len() != len(keys)-1 {
		t.Fatal("expired entry served or kept")
	}
	var nilCache *Cache[*entry]
	if _, ok := nilCache.GetBytes(keys[0]); ok {
		t.Fatal("nil cache served")
	}
}

// TestRealClock: with the real clock (nil), an entry is served until its time and not after,
// also between two readings of the wall clock (within anchorLife) and across them; in a
// synctest bubble the clocks are the bubble's, so no test time passes.
func TestRealClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New[*entry](1000, nil) // room in every shard: no entry evicts another
		e := &entry{until: time.Now().Add(time.Minute)}
		c.Put("a", e)
		b := []byte("b")
		c.Put(string(b), &entry{until: time.Now().Add(2 * time.Minute)})
		time.Sleep(time.Minute - time.Second)
		if got, ok := c.Get("a"); !ok || got != e {
			t.Fatal("entry not served before its time")
		}
		time.Sleep(time.Second)
		if _, ok := c.Get("a"); ok {
			t.Fatal("entry served at its time")
		}
		if _, ok := c.GetBytes(b); !ok {
			t.Fatal("GetBytes: entry not served before its time")
		}
		time.Sleep(time.Minute - anchorLife/2)
		if _, ok := c.GetBytes(b); !ok {
			t.Fatal("GetBytes: entry not served half an anchor before its time")
		}
		time.Sleep(anchorLife / 2) // within anchorLife of the last reading of the wall clock
		if _, ok := c.GetBytes(b); ok {
			t.Fatal("GetBytes: entry served at its time")
		}
		if c.Len() != 0 {
			t.Fatalf("%d expired entries kept after their lookups", c.Len())
		}
		c.Put("late", &entry{until: time.Now()})
		if c.Len() != 0 {
			t.Fatal("stored an entry that is already invalid")
		}
	})
}
