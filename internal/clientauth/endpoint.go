package clientauth

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DiscoveryRetry is how long a failed discovery of an endpoint is remembered, so that a
// burst of requests does not become a burst of metadata fetches.
const DiscoveryRetry = 10 * time.Second

// Endpoint is an authorization server endpoint this client calls: the one configured, or
// else the one its RFC 8414 metadata publishes, discovered on first use and kept.
type Endpoint struct {
	// Group names the feature in the error log ("introspection"), Name the endpoint in
	// logs and errors ("introspection endpoint").
	Group, Name string
	// Fix is what an operator does when discovery fails, for the error log.
	Fix string
	// Discover finds the endpoint; nil when it cannot be discovered.
	Discover func(ctx context.Context) (string, error)
	Now      func() time.Time
	Logger   *zap.Logger

	mu        sync.Mutex
	url       string
	retryAt   time.Time
	lastError error
}

// Set fixes the endpoint (the configured one): Get answers it and never discovers.
func (e *Endpoint) Set(url string) {
	e.mu.Lock()
	e.url = url
	e.mu.Unlock()
}

// Get returns the configured or discovered endpoint. A failed discovery is logged once and
// answered for DiscoveryRetry without another attempt.
func (e *Endpoint) Get(ctx context.Context) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.url != "" {
		return e.url, nil
	}
	if e.Discover == nil {
		return "", errors.New("no " + e.Name)
	}
	now := e.Now()
	if now.Before(e.retryAt) {
		return "", e.lastError
	}
	url, err := e.Discover(ctx)
	if err != nil {
		e.retryAt, e.lastError = now.Add(DiscoveryRetry), err
		e.Logger.Error(e.Group+": cannot discover the "+e.Name+"; "+e.Fix, zap.Error(err))
		return "", err
	}
	e.url = url
	e.Logger.Info(e.Name+" discovered", zap.String("endpoint", url))
	return url, nil
}
