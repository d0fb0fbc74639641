package exchange

import (
	"errors"

	"github.com/mcpauth/caddy-mcp-auth/internal/telemetry"
)

// Kind says what a failed exchange means for the request.
type Kind uint8

const (
	// Refused: the authorization server refused to exchange this token for this target
	// (invalid_grant, invalid_target, invalid_scope, unauthorized_client, invalid_request).
	// A new incoming token with more scope would not help: 403 access_denied.
	Refused Kind = iota + 1
	// Unavailable: the server is down, answered 5xx, timed out, or every slot stayed busy.
	Unavailable
	// ClientRefused: the server refused our client (invalid_client, or a grant it does not
	// support for us); the operator must fix the configuration.
	ClientRefused
	// BadAnswer: a success answer that is not a well-formed RFC 8693 response.
	BadAnswer
)

// Error is a failed exchange. It never holds a token.
type Error struct {
	Kind Kind
	// Code is the OAuth error code of the server's answer, when it gave one.
	Code string
	Err  error
}

func (e *Error) Error() string {
	s := "token exchange"
	switch e.Kind {
	case Refused:
		s += " refused"
	case Unavailable:
		s += " unavailable"
	case ClientRefused:
		s += ": our client was refused"
	case BadAnswer:
		s += ": unusable answer"
	}
	if e.Code != "" {
		s += " (" + e.Code + ")"
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of a failed exchange; Unavailable for any other error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unavailable
}

var (
	errBusy = errors.New("every slot for calls to the token endpoint stayed busy")
	errShed = errors.New("as many exchanges as allowed wait for a slot already")
)

// Outcome classifies a failed exchange for metrics and spans (telemetry.Outcomes): nil is
// ok; a refusal by the server, of the token or of our client, is refused; a call shed by
// the limits is busy; an unusable answer bad_answer; a 5xx server_error; no answer in time
// or at all unreachable.
func Outcome(err error) string {
	if err == nil {
		return telemetry.OK
	}
	var e *Error
	if !errors.As(err, &e) {
		return telemetry.Outcome(err)
	}
	switch e.Kind {
	case Refused, ClientRefused:
		return telemetry.Refused
	case BadAnswer:
		return telemetry.BadAnswer
	}
	if errors.Is(e.Err, errBusy) || errors.Is(e.Err, errShed) {
		return telemetry.Busy
	}
	if e.Err == nil {
		return telemetry.Unreachable
	}
	if o := telemetry.Outcome(e.Err); o != telemetry.BadAnswer {
		return o
	}
	// Unavailable without a network error: no endpoint found, no request built.
	return telemetry.Unreachable
}
