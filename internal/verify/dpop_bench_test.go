package verify_test

import (
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/mcpauth/caddy-mcp-auth/internal/jwttest"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// BenchmarkReplayCacheHeap feeds 1,000,000 distinct jtis to a replay cache of the default
// size (100,000) and of 1,000,000 entries, and reports the heap the cache holds afterwards:
// it stays bounded by its size, whatever the number of jtis.
//
//	go test -run '^$' -bench ReplayCacheHeap -benchtime 1x ./internal/verify
func BenchmarkReplayCacheHeap(b *testing.B) {
	for _, size := range []int{100_000, 1_000_000} {
		b.Run("size="+strconv.Itoa(size), func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				c := verify.NewReplayCache(size)
				for i := range 1_000_000 {
					c.Seen("jkt", "jti-"+strconv.Itoa(i), 2_000_000_000, 1_000_000_000)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-heap")
				b.ReportMetric(float64(c.Len()), "entries")
				runtime.KeepAlive(c)
			}
		})
	}
}

// BenchmarkReplayCacheSeen is the cost of recording one new jti in a full cache.
func BenchmarkReplayCacheSeen(b *testing.B) {
	c := verify.NewReplayCache(100_000)
	jtis := make([]string, 1<<16)
	for i := range jtis {
		jtis[i] = "jti-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Seen("jkt", jtis[i&(len(jtis)-1)]+strconv.Itoa(i>>16), 2_000_000_000, 1_000_000_000)
	}
}

// BenchmarkDPoPCheck is a whole proof check (Check and Remember) against golang-jwt's bare
// signature check of the same proof: the difference is what the checks of RFC 9449 §4.3 add.
func BenchmarkDPoPCheck(b *testing.B) {
	for _, alg := range []string{"ES256", "EdDSA"} {
		k := jwttest.New(b, "", alg)
		pool := make([]string, 1024)
		for i := range pool {
			pool[i] = k.Proof(b, "POST", testHTU, testToken, testNow.Unix())
		}
		b.Run("check/"+alg, func(b *testing.B) {
			d := newChecker(100_000)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%len(pool) == 0 {
					b.StopTimer()
					d.Replay = verify.NewReplayCache(100_000)
					b.StartTimer()
				}
				p, err := d.Check(pool[i%len(pool)], "POST", testHTU, verify.Hashed(testToken))
				if err != nil {
					b.Fatal(err)
				}
				if err := d.Remember(p); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("signature_only/"+alg, func(b *testing.B) {
			p := pool[0]
			i := strings.LastIndexByte(p, '.')
			sig, err := jwt.NewParser().DecodeSegment(p[i+1:])
			if err != nil {
				b.Fatal(err)
			}
			m := jwt.GetSigningMethod(alg)
			pub := k.Signer.Public()
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Verify(p[:i], sig, pub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
