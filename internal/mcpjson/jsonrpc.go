// Package mcpjson reads MCP's JSON-RPC messages exactly as the MCP SDKs do: strictly for the
// requests a policy judges (ReadRPC, CheckMCPHeaders), and leniently enough for the answers to
// list requests whose entries it removes (FilterListsJSON, FilterJSONAnswer, FilterSSEEvent).
// It knows nothing of Caddy or of HTTP handlers.
package mcpjson

import (
	"bytes"
	"errors"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
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

// Errors of the JSON-RPC reader. The handler answers each with 400 invalid_request.
var (
	errJSONSyntax     = errors.New("invalid JSON")
	errJSONDepth      = errors.New("JSON nested too deeply")
	errJSONUTF8       = errors.New("invalid UTF-8 in JSON string")
	errJSONSurrogate  = errors.New("unpaired UTF-16 surrogate escape in JSON string")
	errJSONDuplicate  = errors.New("duplicate key in JSON object")
	errRPCNotMessage  = errors.New("not a JSON-RPC message: an object or a non-empty array of objects is expected")
	errRPCVersion     = errors.New(`JSON-RPC version must be "2.0"`)
	errRPCMethod      = errors.New("JSON-RPC method is not a string")
	errRPCNoID        = errors.New("JSON-RPC message has neither a method nor an id")
	errRPCParams      = errors.New("params of tools/call, prompts/get or resources/read, subscribe, unsubscribe must be an object with a string name or uri")
	errRPCHeaderMatch = errors.New("Mcp-Method or Mcp-Name header does not match the body")
	errRPCKeyCase     = errors.New("a key differs only in case from a JSON-RPC or MCP key")
	errRPCRef         = errors.New(`params.ref of completion/complete must be an object with type "ref/prompt" and a string name, or "ref/resource" and a string uri`)
)

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

// jsonReader is a strict, allocation-light JSON reader over a complete body. It validates
// RFC 8259 grammar, UTF-8, escapes, and key uniqueness in every object at every depth.
type jsonReader struct {
	data  []byte
	pos   int
	depth int
	// keys holds the keys of every open object, innermost last; each object remembers where
	// its own keys start. Keys without escapes are views into data; decoded keys live in arena.
	keys  [][]byte
	arena []byte
	// str is scratch space for a decoded string value.
	str []byte
	// loneSurrogates accepts unpaired UTF-16 surrogate escapes (decoded as U+FFFD). Only for
	// reading server answers: servers in JavaScript or Python emit them, and such a string
	// can never spell a key the filter looks for. Requests stay strict.
	loneSurrogates bool
}

// objFrame is one open object: where its keys start in jsonReader.keys, and a set of them
// once there are too many to compare one by one.
type objFrame struct {
	start int
	set   map[string]struct{}
	first bool
}

// linearKeys is how many keys an object may have before duplicates are found with a map.
const linearKeys = 8

func (p *jsonReader) reset(data []byte) {
	p.loneSurrogates = false
	p.data = data
	p.pos = 0
	p.depth = 0
	p.keys = p.keys[:0]
	p.arena = p.arena[:0]
}

func (p *jsonReader) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (p *jsonReader) peek() byte {
	p.skipSpace()
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

// end checks that only whitespace is left.
func (p *jsonReader) end() error {
	p.skipSpace()
	if p.pos != len(p.data) {
		return errJSONSyntax
	}
	return nil
}

// beginObject consumes '{' and opens a key frame.
func (p *jsonReader) beginObject() (objFrame, error) {
	if p.peek() != '{' {
		return objFrame{}, errJSONSyntax
	}
	p.pos++
	p.depth++
	if p.depth > maxJSONDepth {
		return objFrame{}, errJSONDepth
	}
	return objFrame{start: len(p.keys), first: true}, nil
}

// nextMember reads the next key and its ':' and reports true, or consumes the closing '}'
// and reports false. A key already seen in this object is an error.
func (p *jsonReader) nextMember(f *objFrame) ([]byte, bool, error) {
	c := p.peek()
	if f.first {
		f.first = false
		if c == '}' {
			p.pos++
			p.closeObject(f)
			return nil, false, nil
		}
	} else {
		switch c {
		case '}':
			p.pos++
			p.closeObject(f)
			return nil, false, nil
		case ',':
			p.pos++
			c = p.peek()
		default:
			return nil, false, errJSONSyntax
		}
	}
	if c != '"' {
		return nil, false, errJSONSyntax
	}
	raw, escaped, err := p.rawString()
	if err != nil {
		return nil, false, err
	}
	key := raw
	if escaped {
		start := len(p.arena)
		p.arena, err = unescape(p.arena, raw)
		if err != nil {
			return nil, false, err
		}
		key = p.arena[start:len(p.arena):len(p.arena)]
	}
	if err := p.addKey(f, key); err != nil {
		return nil, false, err
	}
	if p.peek() != ':' {
		return nil, false, errJSONSyntax
	}
	p.pos++
	return key, true, nil
}

func (p *jsonReader) addKey(f *objFrame, key []byte) error {
	if f.set != nil {
		if _, dup := f.set[string(key)]; dup {
			return errJSONDuplicate
		}
		f.set[string(key)] = struct{}{}
		return nil
	}
	own := p.keys[f.start:]
	for _, k := range own {
		if bytes.Equal(k, key) {
			return errJSONDuplicate
		}
	}
	if len(own) >= linearKeys {
		f.set = make(map[string]struct{}, 2*linearKeys)
		for _, k := range own {
			f.set[string(k)] = struct{}{}
		}
		f.set[string(key)] = struct{}{}
		return nil
	}
	p.keys = append(p.keys, key)
	return nil
}

func (p *jsonReader) closeObject(f *objFrame) {
	p.keys = p.keys[:f.start]
	p.depth--
	if f.start == 0 {
		p.arena = p.arena[:0]
	}
}

// value validates any JSON value.
func (p *jsonReader) value() error {
	switch p.peek() {
	case '{':
		f, err := p.beginObject()
		if err != nil {
			return err
		}
		for {
			_, ok, err := p.nextMember(&f)
			if err != nil {
				return err
			}
			if !ok {
				return nil
			}
			if err := p.value(); err != nil {
				return err
			}
		}
	case '[':
		return p.array(nil)
	case '"':
		_, _, err := p.rawString()
		return err
	case 't':
		return p.literal("true")
	case 'f':
		return p.literal("false")
	case 'n':
		return p.literal("null")
	default:
		return p.number()
	}
}

// array validates an array, calling elem (when not nil) to read each element instead of
// value. elem gets the element's index.
func (p *jsonReader) array(elem func(i int) error) error {
	if p.peek() != '[' {
		return errJSONSyntax
	}
	p.pos++
	p.depth++
	if p.depth > maxJSONDepth {
		return errJSONDepth
	}
	if p.peek() == ']' {
		p.pos++
		p.depth--
		return nil
	}
	for i := 0; ; i++ {
		var err error
		if elem != nil {
			err = elem(i)
		} else {
			err = p.value()
		}
		if err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			p.depth--
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (p *jsonReader) literal(lit string) error {
	if len(p.data)-p.pos < len(lit) || string(p.data[p.pos:p.pos+len(lit)]) != lit {
		return errJSONSyntax
	}
	p.pos += len(lit)
	return nil
}

// number validates -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
func (p *jsonReader) number() error {
	d, i := p.data, p.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i++; i < len(d) && isDigit(d[i]); i++ {
		}
	default:
		return errJSONSyntax
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return errJSONSyntax
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return errJSONSyntax
		}
		for ; i < len(d) && isDigit(d[i]); i++ {
		}
	}
	p.pos = i
	return nil
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// strSafe marks the bytes a string may hold as is: not '"', '\\', a control character, or a
// byte of a multi-byte UTF-8 sequence.
var strSafe = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// rawString validates a string at the current position and returns its contents between the
// quotes, and whether they hold escapes.
func (p *jsonReader) rawString() ([]byte, bool, error) {
	d := p.data
	if p.pos >= len(d) || d[p.pos] != '"' {
		return nil, false, errJSONSyntax
	}
	start := p.pos + 1
	escaped := false
	i := start
	for {
		for i < len(d) && strSafe[d[i]] {
			i++
		}
		if i >= len(d) {
			return nil, false, errJSONSyntax
		}
		c := d[i]
		switch {
		case c == '"':
			p.pos = i + 1
			return d[start:i], escaped, nil
		case c == '\\':
			escaped = true
			n, err := escapeLen(d[i:], p.loneSurrogates)
			if err != nil {
				return nil, false, err
			}
			i += n
		case c < 0x20:
			return nil, false, errJSONSyntax
		default:
			r, size := utf8.DecodeRune(d[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, false, errJSONUTF8
			}
			i += size
		}
	}
}

// escapeLen validates the escape sequence at the start of s and returns its length. A \u
// escape of a UTF-16 surrogate must be a high one followed by a low one, unless lone ones
// are allowed.
func escapeLen(s []byte, lone bool) (int, error) {
	if len(s) < 2 {
		return 0, errJSONSyntax
	}
	switch s[1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return 2, nil
	case 'u':
		r, ok := hex4(s[2:])
		if !ok {
			return 0, errJSONSyntax
		}
		if !utf16.IsSurrogate(r) {
			return 6, nil
		}
		if r < 0xDC00 && len(s) >= 12 && s[6] == '\\' && s[7] == 'u' {
			if r2, ok := hex4(s[8:]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
				return 12, nil
			}
		}
		if lone {
			return 6, nil
		}
		return 0, errJSONSurrogate
	}
	return 0, errJSONSyntax
}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// unescape appends the decoded contents of a string already validated by rawString.
func unescape(dst, raw []byte) ([]byte, error) {
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, _ := hex4(raw[i+2:])
			if utf16.IsSurrogate(r) {
				// A pair was validated by rawString; a lone one (allowed for server
				// answers only) becomes U+FFFD, as in Go's encoding/json.
				if r < 0xDC00 && i+12 <= len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
					if r2, ok := hex4(raw[i+8:]); ok && r2 >= 0xDC00 && r2 <= 0xDFFF {
						dst = utf8.AppendRune(dst, utf16.DecodeRune(r, r2))
						i += 12
						continue
					}
				}
				dst = utf8.AppendRune(dst, utf8.RuneError)
				i += 6
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += 6
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst, nil
}

// stringValue reads a string value and returns its decoded contents, valid until the next
// call.
func (p *jsonReader) stringValue() ([]byte, error) {
	raw, escaped, err := p.rawString()
	if err != nil || !escaped {
		return raw, err
	}
	p.str, err = unescape(p.str[:0], raw)
	return p.str, err
}

// readerPool keeps readers, with their scratch space, across requests.
var readerPool = sync.Pool{New: func() any { return new(jsonReader) }}

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

// CheckMCPHeaders checks that the Mcp-Method and Mcp-Name request headers, where present,
// name what the body holds. They describe a single request, so a batch may not carry them.
func CheckMCPHeaders(method, name []string, msgs []Message, batch bool) error {
	if len(method) == 0 && len(name) == 0 {
		return nil
	}
	if batch || len(msgs) != 1 || len(method) > 1 || len(name) > 1 {
		return errRPCHeaderMatch
	}
	m := msgs[0]
	if len(method) == 1 && (!m.HasMethod || method[0] != m.Method) {
		return errRPCHeaderMatch
	}
	if len(name) == 1 {
		switch m.Method {
		case MethodToolsCall, MethodPromptsGet, MethodResourcesRead:
			if name[0] != m.Name {
				return errRPCHeaderMatch
			}
		default:
			return errRPCHeaderMatch
		}
	}
	return nil
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
