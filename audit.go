package mcpauth

import (
	"net"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// audit: one structured event per decision, on the logger `http.handlers.mcp_auth.audit`, so
// that Caddy's logging config routes it (`log { include http.handlers.mcp_auth.audit }`) to a
// file or the network apart from the access log. The fields are a documented, stable schema
// (docs/audit.md). The token never is one of them: token_id is its jti, else a hash prefix.

// auditLoggerName is the name under the module's logger: Caddy names a module's logger after
// its ID, so the events come out on `http.handlers.mcp_auth.audit`.
const auditLoggerName = "audit"

// auditKey is the replacer key under which the request path leaves its auditRecord. It is no
// documented placeholder.
const auditKey = "http.auth.mcp.audit"

// auditRecord is what the request path learns for the audit event after the token verified:
// the caller, then the operation and the rule that decided. One per audited request.
type auditRecord struct {
	// caller is nil until the token verified; digest holds the token presented until then.
	caller             *caller
	digest             tokenDigest
	method, name, rule string
	// exchangeTarget names the token exchange target, exchangedID the new token's jti.
	exchangeTarget, exchangedID string
	// anonymous: the request carried no token (public).
	anonymous bool
	// span is the request's span when it records (recordingSpan), set by ServeHTTP.
	span trace.Span
}

// String is what the record shows should someone log its replacer key: the user only.
func (a *auditRecord) String() string {
	if a.caller == nil {
		return ""
	}
	return a.caller.userID
}

// auditRecordOf returns the request's record, or nil before a token was read.
func auditRecordOf(r *http.Request) *auditRecord {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return nil
	}
	v, _ := repl.Get(auditKey)
	rec, _ := v.(*auditRecord)
	return rec
}

// Placeholders of the JSON-RPC request, set whenever the body was read.
const (
	methodPlaceholder = "http.auth.mcp.method"
	namePlaceholder   = "http.auth.mcp.name"
)

// ruleBase names the base policy (scopes, any_of) in the rule field.
const ruleBase = "base"

// auditDecision writes the event for the decision on r: d is the denial, or denyNone when the
// request passes on. Everything it needs is in the request: the replacer holds the caller and
// the operation, the header holds the token.
func (h *Handler) auditDecision(r *http.Request, d denial) {
	if ce := h.audit.Check(zapcore.InfoLevel, "decision"); ce != nil {
		h.writeAudit(ce, r, d, auditRecordOf(r))
	}
}

// writeAudit writes the event; rec is the request's record, nil before a token was read.
func (h *Handler) writeAudit(ce *zapcore.CheckedEntry, r *http.Request, d denial, rec *auditRecord) {
	// The fields escape into zap's core; a pooled array spares an allocation of ~1 KiB.
	fields := auditFields.Get().(*[16]zap.Field)
	defer auditFields.Put(fields)
	f := fields[:0]
	if d == denyNone {
		f = append(f, zap.String("decision", "allow"))
	} else {
		info := denials[d]
		reason := info.code
		if reason == "" {
			reason = "access_denied"
		}
		f = append(f, zap.String("decision", "deny"), zap.Int("status", info.status),
			zap.String("reason", reason), zap.String("detail", info.label))
	}
	tokenID := ""
	if rec != nil && (rec.caller != nil || rec.anonymous) {
		if rec.anonymous {
			f = append(f, zap.Bool("anonymous", true))
		} else {
			id := rec.caller.identity
			f = append(f, zap.String("iss", id.Issuer), zap.String("sub", id.Subject), zap.String("client_id", id.ClientID))
		}
		if rec.method != "" {
			f = append(f, zap.String("method", rec.method))
			if rec.name != "" {
				f = append(f, zap.String("name", rec.name))
			}
		}
		if rec.rule != "" {
			f = append(f, zap.String("rule", rec.rule))
		}
		if rec.exchangeTarget != "" {
			f = append(f, zap.String("exchange_target", rec.exchangeTarget))
			if rec.exchangedID != "" {
				f = append(f, zap.String("exchanged_token_id", rec.exchangedID))
			}
		}
		if rec.caller != nil {
			tokenID = rec.caller.tokenID()
		}
	} else if rec != nil && rec.digest.raw != "" {
		tokenID = rec.digest.hash().ShortID()
	}
	if tokenID != "" {
		f = append(f, zap.String("token_id", tokenID))
	}
	f = append(f, zap.String("remote_ip", remoteIP(r)))
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		// Caddy's request UUID: reading it also puts it in the access log entry ("uuid").
		if id, ok := repl.Get("http.request.uuid"); ok {
			if s, ok := id.(string); ok {
				f = append(f, zap.String("request_id", s))
			}
		}
	}
	ce.Write(f...)
}

var auditFields = sync.Pool{New: func() any { return new([16]zap.Field) }}

// remoteIP is the client's address as Caddy determined it (trusted_proxies applied), else the
// connection's.
func remoteIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ruleLabel names a rule in the audit event as the Caddyfile writes it: `tool delete_*`,
// `method logging/setLevel`; a JSON rule with several lists names each, separated by "; ".
func ruleLabel(r *Rule) string {
	var b []byte
	for _, l := range []struct {
		kind string
		pats []string
	}{{"tool", r.Tools}, {"prompt", r.Prompts}, {"resource_uri", r.ResourceURIs}, {"method", r.Methods}} {
		if len(l.pats) == 0 {
			continue
		}
		if len(b) > 0 {
			b = append(b, "; "...)
		}
		b = append(b, l.kind...)
		for _, p := range l.pats {
			b = append(b, ' ')
			b = append(b, p...)
		}
	}
	return string(b)
}

// ruleName names the rule that decided (policy.Verdict.Rule) in the audit event.
func (ops *opPolicy) ruleName(rule int) string {
	if rule == policy.BaseRule {
		return ruleBase
	}
	return ops.ruleLabels[rule]
}

// tokenID is the token's jti, else the hash the authenticate step noted for audit.
func (c *caller) tokenID() string {
	if c.identity.TokenID != "" {
		return c.identity.TokenID
	}
	return c.tokenHash
}
