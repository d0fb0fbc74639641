package mcpauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcpauth/caddy-mcp-auth/internal/mcpjson"
	"github.com/mcpauth/caddy-mcp-auth/internal/policy"
	"github.com/mcpauth/caddy-mcp-auth/internal/verify"
)

// challenge_in_result: some clients open their sign-in only for a tool result that carries
// the challenge, never for an HTTP 401/403 on a tool call. ChatGPT is one (Apps SDK,
// "Authentication": a tool result with isError and _meta["mcp/www_authenticate"]). For the
// clients listed, a single tools/call refused for lack of a token or of scopes is answered
// 200 with that result; every other client, every batch and every other request gets the
// HTTP status, which Claude and the MCP specification act on.

// defaultInResultClients is what `challenge_in_result` alone matches: ChatGPT's connector,
// whose requests carry `User-Agent: openai-mcp/1.0.0`, sometimes with a comment after it
// (docs/public-tools.md has the evidence).
var defaultInResultClients = []string{"openai-mcp/*"}

// inResultClients is the compiled challenge_in_result list.
type inResultClients struct {
	match func(string) bool
}

func newInResultClients(list []string) *inResultClients {
	if len(list) == 0 {
		return nil
	}
	// Client patterns: a URL pattern (a CIMD client_id) has * stand for whole host labels.
	return &inResultClients{match: policy.MatchClients(list)}
}

// matches reports a client listed: by its User-Agent, or by the client_id of its token
// (id nil for a request without one). Matched byte for byte, as `clients` patterns are.
func (c *inResultClients) matches(r *http.Request, id *verify.Identity) bool {
	if ua := r.Header["User-Agent"]; len(ua) == 1 && c.match(ua[0]) {
		return true
	}
	return id != nil && c.match(id.ClientID)
}

// checkInResultClients refuses empty patterns, and URL patterns with * inside a host label.
func checkInResultClients(list []string) error {
	if slices.Contains(list, "") {
		return fmt.Errorf("challenge_in_result: %w", errRuleEmptyMatch)
	}
	for _, p := range list {
		if err := policy.CheckClientPattern(p); err != nil {
			return fmt.Errorf("challenge_in_result: %w", err)
		}
	}
	return nil
}

// unmarshalChallengeInResult reads `challenge_in_result [<client-glob...>]`; alone, it lists
// the default clients.
func unmarshalChallengeInResult(d *caddyfile.Dispenser, h *Handler) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		args = slices.Clone(defaultInResultClients)
	}
	if err := checkInResultClients(args); err != nil {
		return d.WrapErr(err)
	}
	h.ChallengeInResult = append(h.ChallengeInResult, args...)
	return nil
}

// inResultText is the text of the refused call's result: the model reads it, the client
// acts on _meta.
const (
	inResultTextToken = "This tool requires signing in. Sign in to continue."
	inResultTextScope = "This tool requires more permissions than were granted. Sign in again to grant them."
)

// answerInResult writes the 200 answer for a refused single tools/call from a matched
// client, and reports false, writing nothing, when the request is not one (a batch, another
// method, a notification without id). d is the denial it replaces: counted and audited as such.
func (h *Handler) answerInResult(w http.ResponseWriter, r *http.Request, msgs []mcpjson.Message, body []byte, d denial, challenge string) bool {
	if len(msgs) != 1 || msgs[0].Method != mcpjson.MethodToolsCall {
		return false
	}
	var env struct {
		ID json.RawMessage `json:"id"`
	}
	// The body passed the strict reader: no duplicate or case-variant "id" is left for
	// encoding/json to pick among.
	if err := json.Unmarshal(body, &env); err != nil || !rpcIDShape(env.ID) {
		return false
	}
	jsonOK, sseOK := acceptable(r.Header["Accept"])
	if !jsonOK && !sseOK {
		return false
	}
	text := inResultTextToken
	if d == denyInsufficientScope {
		text = inResultTextScope
	}
	hdr, _ := json.Marshal([]string{challenge})
	txt, _ := json.Marshal(text)
	msg := make([]byte, 0, 256+len(challenge))
	msg = append(msg, `{"jsonrpc":"2.0","id":`...)
	msg = append(msg, env.ID...)
	msg = append(msg, `,"result":{"content":[{"type":"text","text":`...)
	msg = append(msg, txt...)
	msg = append(msg, `}],"isError":true,"_meta":{"mcp/www_authenticate":`...)
	msg = append(msg, hdr...)
	msg = append(msg, "}}}"...)

	h.recordDenial(r, d, nil)
	out := w.Header()
	out.Set("Cache-Control", "no-store")
	if jsonOK {
		out.Set("Content-Type", "application/json")
	} else {
		out.Set("Content-Type", "text/event-stream")
		msg = append(append([]byte("event: message\ndata: "), msg...), "\n\n"...)
	}
	out.Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(msg)
	return true
}

// rpcIDShape reports an id the answer may carry back as written: a JSON string or number
// (JSON-RPC 2.0 §4; null and absent ids are no request to answer). An object, array or boolean
// id is no JSON-RPC request, and it may hold line breaks between its tokens that would split
// the SSE event; a string or number, as encoding/json hands it over, holds none.
func rpcIDShape(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	c := id[0]
	return c == '"' || c == '-' || '0' <= c && c <= '9'
}

// acceptable reads the Accept header values: whether application/json, and whether
// text/event-stream, may be answered. No Accept accepts anything (RFC 9110 §12.5.1).
func acceptable(vals []string) (jsonOK, sseOK bool) {
	if len(vals) == 0 {
		return true, true
	}
	for _, v := range vals {
		for _, rng := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(rng, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if zeroQ(params) {
				continue
			}
			switch mt {
			case "*/*":
				jsonOK, sseOK = true, true
			case "application/*", "application/json":
				jsonOK = true
			case "text/*", "text/event-stream":
				sseOK = true
			}
		}
	}
	return jsonOK, sseOK
}

// zeroQ reports a q=0 parameter: "not acceptable".
func zeroQ(params string) bool {
	for _, p := range strings.Split(params, ";") {
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// inResultForSignedIn is the hook of the signed-in path: a matched client's single
// tools/call refused for its scopes gets the challenge in a result. It re-reads the body,
// which judgeOperation handed on unchanged.
func (h *Handler) inResultForSignedIn(w http.ResponseWriter, r *http.Request, c *caller, d denial, stepUp []string) bool {
	if h.inResult == nil || d != denyInsufficientScope || r.Method != http.MethodPost || !h.inResult.matches(r, c.identity) ||
		unjudgeable(r) != denyNone {
		// A body the resource refuses to read is no tools/call it judged: the status stays.
		return false
	}
	body, err := readBody(r, h.ops.maxBody)
	if err != nil {
		return false
	}
	setBody(r, body)
	var buf [1]mcpjson.Message
	msgs, batch, err := mcpjson.ReadRPC(body, buf[:0])
	if err != nil || batch {
		return false
	}
	challenge := h.chall.header[d]
	if stepUp != nil {
		challenge = h.chall.stepUp(stepUp)
	}
	return h.answerInResult(w, r, msgs, body, d, challenge)
}
