package verify

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// failureSummaryEvery is the least time between two summaries of failing calls: an outage
// or a flood is said once when it starts, then counted, not logged once per request.
const failureSummaryEvery = time.Minute

// failureLog turns a run of failures into one warning when it starts, a summary at most
// every failureSummaryEvery while it lasts (the calls since the last line, by kind), and one
// line when it ends. Kinds are short words the operator acts on: timeout, connection
// refused, status 5xx, credentials refused (4xx). A server that flaps between failing and
// answering writes no more than that: a new run starting within failureSummaryEvery of the
// last line is counted, and said in the next line.
type failureLog struct {
	first, still, over string // the three messages

	mu        sync.Mutex
	announced bool      // the first warning of a run is written, its end not yet
	since     time.Time // the first failure since the last end
	last      time.Time // the last line written
	lastFail  time.Time
	total     int            // failures since the last end
	counts    map[string]int // failures since the last line
}

var (
	callFailures = func() *failureLog {
		return &failureLog{
			first: "introspection failing; further failures are counted, not logged one by one",
			still: "introspection still failing",
			over:  "introspection answering again",
		}
	}
	shedCalls = func() *failureLog {
		return &failureLog{
			first: "introspection: shedding new calls to the authorization server (503 with Retry-After); further ones are counted",
			still: "introspection: still shedding new calls",
		}
	}
)

// failed records one failure of kind; fields describe it (never a token or a secret).
func (f *failureLog) failed(log *zap.Logger, now time.Time, kind string, fields ...zap.Field) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts == nil {
		f.counts = map[string]int{}
	}
	if f.announced && f.over == "" && now.Sub(f.lastFail) >= failureSummaryEvery {
		// A log without an end line (shedding): a quiet interval ends the run.
		f.announced, f.total = false, 0
	}
	if f.total == 0 {
		f.since = now
	}
	f.total++
	f.counts[kind]++
	f.lastFail = now
	if !f.last.IsZero() && now.Sub(f.last) < failureSummaryEvery {
		return
	}
	msg := f.still
	if !f.announced {
		msg = f.first
		fields = append(fields, zap.String("failure", kind))
	}
	if ce := log.Check(zap.WarnLevel, msg); ce != nil {
		ce.Write(append(fields, f.summary(now)...)...)
	}
	f.announced, f.last = true, now
	clear(f.counts)
}

// succeeded ends a run of failures, if one is under way.
func (f *failureLog) succeeded(log *zap.Logger, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total == 0 {
		return
	}
	if f.announced {
		if ce := log.Check(zap.InfoLevel, f.over); ce != nil {
			ce.Write(zap.Int("failed_calls", f.total), zap.Time("since", f.since), zap.Duration("lasted", now.Sub(f.since)))
		}
		f.announced, f.last = false, now
		clear(f.counts)
	}
	f.total = 0
}

// summary is the count fields of a line: the failures since the last line, by kind.
func (f *failureLog) summary(now time.Time) []zap.Field {
	n := 0
	by := make(map[string]int, len(f.counts)) // a copy: counts is cleared after the write
	for k, c := range f.counts {
		n += c
		by[k] = c
	}
	out := []zap.Field{zap.Int("calls", n), zap.Any("by_failure", by), zap.Time("since", f.since),
		zap.Duration("lasted", now.Sub(f.since))}
	if !f.last.IsZero() {
		out = append(out, zap.Time("last_line", f.last))
	}
	return out
}

// failureKind names why a call to the endpoint failed, as the operator acts on it.
func failureKind(err error) string {
	var ne net.Error
	var dns *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dns):
		return "name not resolved"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	return "unreachable"
}
