// Package mcpjson reads MCP's JSON-RPC messages exactly as the MCP SDKs do: strictly for the
// requests a policy judges (ReadRPC, CheckMCPHeaders), and leniently enough for the answers to
// list requests whose entries it removes (FilterListsJSON, FilterJSONAnswer, FilterSSEEvent).
// It knows nothing of Caddy or of HTTP handlers.
package mcpjson

import (
	"bytes"
)

// The per-operation policy judges a request by the JSON-RPC messages in its body, so the body
// must be read exactly as the MCP server will read it. Parsers disagree on duplicate keys
// (first or last wins), on key case (Go's encoding/json matches struct fields without regard
// to case), on invalid UTF-8 and lone surrogates (replaced, kept, or refused), and on a BOM.
// This reader refuses every one of those, so that what it accepts has a single meaning that
// every conforming parser agrees on: no request can be judged as one tool here and run as
// another by the server. For key case that means refusing a key that equals one the policy
// reads (jsonrpc, method, id, params, result, error; name and uri in params; ref in params and
// type, name and uri in params.ref of completion/complete) under Unicode
// case folding without being byte-equal to it: "Method" or "Name" mean nothing to a
// case-sensitive server but the same as "method" and "name" to encoding/json.

// maxJSONDepth bounds nesting. The Go MCP SDK refuses more than 1000 levels as well.
const maxJSONDepth = 1000

// Methods whose params name the operation, and the param that names it.
const (
	MethodToolsCall     = "tools/call"
	MethodToolsList     = "tools/list"
	MethodPromptsGet    = "prompts/get"
	MethodResourcesRead = "resources/read"

	MethodResourcesSubscribe   = "resources/subscribe"
	MethodResourcesUnsubscribe = "resources/unsubscribe"

	MethodCompletionComplete = "completion/complete"
)

// RefKind is what params.ref of a completion/complete names (MCP: PromptReference,
// ResourceTemplateReference).
type RefKind uint8

const (
	RefNone     RefKind = iota
	RefPrompt           // "ref/prompt": Name is params.ref.name
	RefResource         // "ref/resource": Name is params.ref.uri, a URI or a URI template
)

// Message is what the per-operation policy needs of one JSON-RPC message.
type Message struct {
	// Method is the method of a request or notification; "" for a response.
	Method    string
	HasMethod bool
	// Name is params.name of tools/call and prompts/get, params.uri of resources/read,
	// resources/subscribe and resources/unsubscribe, params.ref.name or params.ref.uri of
	// completion/complete; "" for any other method.
	Name string
	// Ref says which of params.ref Name is, for completion/complete.
	Ref RefKind
}

// paramKind records what the params member held, since its key may come before the method.
type paramKind uint8

const (
	paramAbsent paramKind = iota
	paramString
	paramOther
)

// ReadRPC reads a request body strictly: one JSON-RPC message or a batch (a non-empty array
// of messages), refusing whatever conforming parsers could read two ways (duplicate keys, case
// variants of the keys the policy reads, invalid UTF-8, lone surrogate escapes, a BOM).
// Messages are appended to msgs; batch reports an array. The error says why the body was
// refused; the caller answers 400.
func ReadRPC(body []byte, msgs []Message) (_ []Message, batch bool, err error) {
	p := readerPool.Get().(*jsonReader)
	msgs, batch, err = p.readRPC(body, msgs)
	p.data = nil
	readerPool.Put(p)
	return msgs, batch, err
}

// readRPC reads a request body: one JSON-RPC message or a batch (a non-empty array of
// messages). Messages are appended to msgs.
func (p *jsonReader) readRPC(body []byte, msgs []Message) ([]Message, bool, error) {
	p.reset(body)
	var err error
	batch := false
	switch p.peek() {
	case '{':
		var m Message
		if err = p.message(&m); err == nil {
			msgs = append(msgs, m)
		}
	case '[':
		batch = true
		err = p.array(func(int) error {
			if p.peek() != '{' {
				return errRPCNotMessage
			}
			var m Message
			if err := p.message(&m); err != nil {
				return err
			}
			msgs = append(msgs, m)
			return nil
		})
		if err == nil && len(msgs) == 0 {
			err = errRPCNotMessage
		}
	default:
		err = errRPCNotMessage
	}
	if err == nil {
		err = p.end()
	}
	return msgs, batch, err
}

// message reads one JSON-RPC message object.
func (p *jsonReader) message(m *Message) error {
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	var (
		version, hasID bool
		nameKind       paramKind
		uriKind        paramKind
		paramsObject   bool
		// a params key that folds to name or uri: it matters only for the methods whose
		// name or uri the policy reads, known once the whole message is read
		paramsCaseVariant bool
		uri               string
		ref               refParams
	)
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		switch string(key) {
		case "jsonrpc":
			if p.peek() != '"' {
				return errRPCVersion
			}
			v, err := p.stringValue()
			if err != nil {
				return err
			}
			if string(v) != "2.0" {
				return errRPCVersion
			}
			version = true
		case "method":
			if p.peek() != '"' {
				if err := p.value(); err != nil {
					return err
				}
				return errRPCMethod
			}
			v, err := p.stringValue()
			if err != nil {
				return err
			}
			m.Method = internMethod(v)
			m.HasMethod = true
		case "id":
			hasID = true
			if err := p.value(); err != nil {
				return err
			}
		case "params":
			if p.peek() != '{' {
				if err := p.value(); err != nil {
					return err
				}
				continue
			}
			paramsObject = true
			if err := p.params(&m.Name, &nameKind, &uri, &uriKind, &paramsCaseVariant, &ref); err != nil {
				return err
			}
		default:
			if foldsTo(key, messageKeys) {
				return errRPCKeyCase
			}
			if err := p.value(); err != nil {
				return err
			}
		}
	}
	if !version {
		return errRPCVersion
	}
	if !m.HasMethod {
		if !hasID {
			return errRPCNoID
		}
		return nil
	}
	switch m.Method {
	case MethodToolsCall, MethodPromptsGet, MethodResourcesRead, MethodResourcesSubscribe, MethodResourcesUnsubscribe:
		if paramsCaseVariant {
			return errRPCKeyCase
		}
	}
	switch m.Method {
	case MethodToolsCall, MethodPromptsGet:
		if !paramsObject || nameKind != paramString {
			return errRPCParams
		}
	case MethodResourcesRead, MethodResourcesSubscribe, MethodResourcesUnsubscribe:
		if !paramsObject || uriKind != paramString {
			return errRPCParams
		}
		m.Name = uri
	case MethodCompletionComplete:
		// A completion reveals values of a prompt's arguments or a template's variables:
		// it is judged by the prompt or resource it names, read as strictly as params.name.
		if ref.caseVariant {
			return errRPCKeyCase
		}
		if !ref.object || ref.typ.kind != paramString {
			return errRPCRef
		}
		switch ref.typ.s {
		case "ref/prompt":
			if ref.name.kind != paramString {
				return errRPCRef
			}
			m.Name, m.Ref = ref.name.s, RefPrompt
		case "ref/resource":
			if ref.uri.kind != paramString {
				return errRPCRef
			}
			m.Name, m.Ref = ref.uri.s, RefResource
		default:
			return errRPCRef
		}
	default:
		m.Name = ""
	}
	return nil
}

// refParams is what params.ref held.
type refParams struct {
	object         bool
	typ, name, uri refString
	// caseVariant: a key of params that folds to "ref", or of ref that folds to one of
	// its keys without being it.
	caseVariant bool
}

type refString struct {
	s    string
	kind paramKind
}

// ref reads params.ref, keeping its type, name and uri strings.
func (p *jsonReader) ref(r *refParams) error {
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	r.object = true
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		var dst *refString
		switch string(key) {
		case "type":
			dst = &r.typ
		case "name":
			dst = &r.name
		case "uri":
			dst = &r.uri
		default:
			if foldsTo(key, refKeys) {
				r.caseVariant = true
			}
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		if p.peek() != '"' {
			dst.kind = paramOther
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		v, err := p.stringValue()
		if err != nil {
			return err
		}
		dst.s, dst.kind = string(v), paramString
	}
}

// params reads a params object, keeping its top-level name and uri strings.
func (p *jsonReader) params(name *string, nameKind *paramKind, uri *string, uriKind *paramKind, caseVariant *bool, ref *refParams) error {
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			return nil
		}
		var dst *string
		var kind *paramKind
		switch string(key) {
		case "name":
			dst, kind = name, nameKind
		case "uri":
			dst, kind = uri, uriKind
		case "ref":
			if p.peek() != '{' {
				if err := p.value(); err != nil {
					return err
				}
				continue
			}
			if err := p.ref(ref); err != nil {
				return err
			}
			continue
		default:
			if foldsTo(key, paramsKeys) {
				*caseVariant = true
			}
			if foldsTo(key, refParamKeys) {
				ref.caseVariant = true
			}
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		if p.peek() != '"' {
			*kind = paramOther
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		v, err := p.stringValue()
		if err != nil {
			return err
		}
		*dst, *kind = string(v), paramString
	}
}

// internMethod returns the method as a string, without allocating for the methods of MCP.
func internMethod(b []byte) string {
	switch string(b) {
	case MethodToolsCall:
		return MethodToolsCall
	case MethodToolsList:
		return MethodToolsList
	case MethodPromptsGet:
		return MethodPromptsGet
	case MethodResourcesRead:
		return MethodResourcesRead
	case MethodResourcesSubscribe:
		return MethodResourcesSubscribe
	case MethodResourcesUnsubscribe:
		return MethodResourcesUnsubscribe
	case "initialize":
		return "initialize"
	case "notifications/initialized":
		return "notifications/initialized"
	case "ping":
		return "ping"
	case "prompts/list":
		return "prompts/list"
	case "resources/list":
		return "resources/list"
	case "resources/templates/list":
		return "resources/templates/list"
	case MethodCompletionComplete:
		return MethodCompletionComplete
	}
	return string(b)
}

// The keys whose case variants are refused, in a message and in its params.
var (
	messageKeys  = []string{"jsonrpc", "method", "id", "params", "result", "error"}
	paramsKeys   = []string{"name", "uri"}
	refParamKeys = []string{"ref"}
	refKeys      = []string{"type", "name", "uri"}
)

// foldsTo reports whether key equals one of names under Unicode simple case folding (as
// encoding/json matches keys, "ſ" and "s" included) without being that name byte for byte.
func foldsTo(key []byte, names []string) bool {
	for _, n := range names {
		if string(key) != n && bytes.EqualFold(key, []byte(n)) {
			return true
		}
	}
	return false
}
