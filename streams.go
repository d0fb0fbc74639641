package mcpauth

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// close_streams_at_expiry: a Streamable HTTP response may be an SSE stream that lasts for
// hours (the GET stream, or a POST's answer). Authorization was checked when it opened; the
// token that opened it must not keep it open past its expiry (RFC 6750 §5.2 treats an expired
// token as no token). When such a stream starts, a timer is set for the token's exp plus the
// leeway; when it fires, the request's context is cancelled, so reverse_proxy stops reading
// the upstream and the stream ends. The client reconnects with its current token (Streamable
// HTTP, "Resumability and Redelivery").

// expiryWriter watches the response for the start of an event stream.
type expiryWriter struct {
	// By value: the wrapper and this writer are one allocation.
	caddyhttp.ResponseWriterWrapper
	until   time.Time
	now     func() time.Time
	cancel  context.CancelFunc
	timer   *time.Timer
	fired   atomic.Bool
	started bool
}

func (w *expiryWriter) start(status int) {
	if w.started || status < 200 {
		return
	}
	w.started = true
	if status >= 300 || !isEventStream(w.Header().Get("Content-Type")) {
		return
	}
	w.timer = time.AfterFunc(w.until.Sub(w.now()), func() {
		w.fired.Store(true)
		w.cancel()
	})
}

func isEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

func (w *expiryWriter) WriteHeader(status int) {
	w.start(status)
	w.ResponseWriter.WriteHeader(status)
}

func (w *expiryWriter) Write(p []byte) (int, error) {
	w.start(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

func (w *expiryWriter) FlushError() error {
	w.start(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *expiryWriter) ReadFrom(r io.Reader) (int64, error) {
	w.start(http.StatusOK)
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// serveUntilExpiry runs next with a context that ends when the token does, should the
// response become an event stream. A stream cut off that way is ended cleanly: reverse_proxy
// aborts the handler (http.ErrAbortHandler) when its upstream read fails, and that abort is
// taken back here, so the client gets the end of the stream rather than a reset connection.
func (h *Handler) serveUntilExpiry(w http.ResponseWriter, r *http.Request, until time.Time,
	serve func(http.ResponseWriter, *http.Request) error) (err error) {
	ctx, cancel := context.WithCancel(r.Context())
	ew := &expiryWriter{
		ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		until:                 until, now: h.now, cancel: cancel,
	}
	defer func() {
		if ew.timer != nil {
			ew.timer.Stop()
		}
		cancel()
		if ew.fired.Load() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				panic(v)
			}
			err = nil
			if ce := h.logger.Check(zap.DebugLevel, "stream closed at token expiry"); ce != nil {
				ce.Write(zap.String("resource", h.Resource))
			}
		}
	}()
	return serve(ew, r.WithContext(ctx))
}
