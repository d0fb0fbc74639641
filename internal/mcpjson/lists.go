package mcpjson

import (
	"bytes"
	"slices"
)

// Reading and rewriting the answer to a list request for filter_tools_list and filter_lists:
// the answer reaches the client without the tools, prompts, resources or resource templates
// the token may not use. The answer is read the way the most lenient official client (the
// TypeScript SDK with eventsource-parser, the Go SDK) would, and whatever cannot be read with
// certainty is an error rather than passed; docs/filter.md has the table and the client
// behaviour behind each rule. Only responses (messages without a method) whose result holds a
// list array of a filtered kind are rewritten, and of those only the array and cacheScope:
// the rest keeps its bytes.

// ListKind is a kind of list a server answers with: each has its result key and the key of
// the member that names an entry (MCP: ListToolsResult, ListPromptsResult,
// ListResourcesResult, ListResourceTemplatesResult).
type ListKind uint8

const (
	ListTools             ListKind = iota // result.tools[].name
	ListPrompts                           // result.prompts[].name
	ListResources                         // result.resources[].uri
	ListResourceTemplates                 // result.resourceTemplates[].uriTemplate
	numListKinds
)

// listKeys are the result key and the entry key of each kind.
var listKeys = [numListKinds]struct{ result, entry string }{
	ListTools:             {"tools", "name"},
	ListPrompts:           {"prompts", "name"},
	ListResources:         {"resources", "uri"},
	ListResourceTemplates: {"resourceTemplates", "uriTemplate"},
}

// ListKindOf returns the kind of list a method asks for: the list methods of MCP.
func ListKindOf(method string) (ListKind, bool) {
	switch method {
	case MethodToolsList:
		return ListTools, true
	case "prompts/list":
		return ListPrompts, true
	case "resources/list":
		return ListResources, true
	case "resources/templates/list":
		return ListResourceTemplates, true
	}
	return 0, false
}

// ListKinds is a set of list kinds.
type ListKinds uint8

// AllLists holds every kind: filter_lists.
const AllLists = ListKinds(1<<numListKinds - 1)

// Has reports whether k is in the set.
func (s ListKinds) Has(k ListKind) bool { return s&(1<<k) != 0 }

// KindsOf returns the set holding k alone.
func KindsOf(k ListKind) ListKinds { return 1 << k }

// ListFilter says which lists are filtered and what may stay in them.
type ListFilter struct {
	// Kinds are the lists filtered; results with other lists pass untouched.
	Kinds ListKinds
	// Allowed reports whether the entry of kind named key (a name, a URI, a URI template)
	// stays in the list.
	Allowed func(kind ListKind, key string) bool
	// Schemes, when set, returns the securitySchemes value (JSON) of a tool by name: every
	// tool kept in a tools list is rewritten to carry it (schemes.go).
	Schemes func(name string) []byte
}

// privateScope is what a filtered list's cacheScope says: the list varies by caller, and a
// cache must not serve it to another authorization context (MCP 2026-07-28, "Caching",
// "Cache Scope Field").
const privateScope = `"private"`

// The byte-order marks clients drop at the start of a stream: the TextDecoderStream in front
// of eventsource-parser drops a UTF-8 BOM (WHATWG Encoding, "UTF-8 decode"), and
// eventsource-parser 3 then drops "ï»¿" (the BOM's bytes read as Latin-1) from its first chunk.
var (
	utf8BOM   = []byte("\xEF\xBB\xBF")
	latin1BOM = []byte("\u00EF\u00BB\u00BF")
)

// FilterJSONAnswer filters an application/json body. fetch's Response.json() drops a UTF-8
// BOM before it parses (WHATWG Encoding, "UTF-8 decode"), so the JSON after one is filtered
// and the mark kept; the Go SDK refuses such a body either way. An empty body holds nothing.
func FilterJSONAnswer(body []byte, lf *ListFilter) ([]byte, error) {
	if len(body) == 0 {
		return body, nil
	}
	rest := bytes.TrimPrefix(body, utf8BOM)
	out, changed, err := FilterListsJSON(rest, lf)
	if err != nil {
		return nil, err
	}
	if !changed {
		return body, nil
	}
	if len(rest) == len(body) {
		return out, nil
	}
	return append(slices.Clip(body[:len(body)-len(rest)]), out...), nil
}

// FilterListsJSON removes the entries lf refuses from every response in data (a message or a
// batch of them) whose result has a list array of a kind lf filters, and marks that result
// cacheScope "private". Leading JSON white space is skipped like clients do; any other byte
// before the value makes it invalid. An entry without a string name (uri, uriTemplate) is
// removed too. Invalid JSON is an error: the caller must not pass it on unfiltered.
func FilterListsJSON(data []byte, lf *ListFilter) ([]byte, bool, error) {
	p := readerPool.Get().(*jsonReader)
	defer func() { p.data = nil; readerPool.Put(p) }()
	p.reset(data)
	p.loneSurrogates = true
	splices := p.splices[:0]
	defer func() { clear(splices); p.splices = splices[:0] }()
	var err error
	switch p.peek() {
	case '{':
		err = p.filterMessage(&splices, lf)
	case '[':
		err = p.array(func(int) error {
			if p.peek() != '{' {
				return p.value()
			}
			return p.filterMessage(&splices, lf)
		})
	default:
		// A lone value that is no message (a string, a number) holds no list: it stays.
		err = p.value()
	}
	if err == nil {
		err = p.end()
	}
	if err != nil {
		return nil, false, err
	}
	if len(splices) == 0 {
		return data, false, nil
	}
	size := len(data)
	for _, s := range splices {
		size += len(s.repl) - (s.end - s.start)
	}
	out := make([]byte, 0, size)
	at := 0
	for _, s := range splices {
		out = append(out, data[at:s.start]...)
		out = append(out, s.repl...)
		at = s.end
	}
	return append(out, data[at:]...), true, nil
}

// splice replaces data[start:end] with repl.
type splice struct {
	start, end int
	repl       []byte
}

// filterMessage reads one message; if it is a response whose result holds a filtered list,
// the changes to that result are added to splices.
func (p *jsonReader) filterMessage(splices *[]splice, lf *ListFilter) error {
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
			break
		}
		switch string(key) {
		case "result":
			if p.peek() == '{' {
				err = p.filterResult(splices, lf)
			} else {
				err = p.value()
			}
		default:
			// "Result" is "result" to encoding/json-based clients: fail closed, as for
			// requests.
			if foldsTo(key, responseKeys) {
				return errRPCKeyCase
			}
			err = p.value()
		}
		if err != nil {
			return err
		}
	}
	// A message with both method and result is no valid JSON-RPC, but a lenient client
	// might read its result: filtered whatever else it holds.
	return nil
}

// The keys of a server answer the filter reads; their case variants are refused.
var (
	responseKeys   = []string{"result"}
	scopeKeys      = []string{"cacheScope"}
	resultKeyNames = [numListKinds][]string{{"tools"}, {"prompts"}, {"resources"}, {"resourceTemplates"}}
	entryKeyNames  = [numListKinds][]string{{"name"}, {"name"}, {"uri"}, {"uriTemplate"}}
)

// cacheScopeMember is inserted first in a filtered result without cacheScope.
var cacheScopeMember = []byte(`"cacheScope":"private",`)

// filterResult reads a result object. When it holds a list of a kind lf filters, it appends
// to out the splices that filter the list and set cacheScope to "private", in order.
func (p *jsonReader) filterResult(out *[]splice, lf *ListFilter) error {
	open := p.pos + 1 // just after '{'
	f, err := p.beginObject()
	if err != nil {
		return err
	}
	// The first splice of the result is the one for cacheScope, known only at its end.
	mark := len(*out)
	*out = append(*out, splice{start: open, end: open})
	listed := false
	scope := splice{start: -1}
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if string(key) == "cacheScope" {
			// Replaced unless it says "private" already; a client reads the last of two
			// keys, and duplicates are refused by the reader.
			p.skipSpace()
			start := p.pos
			if err := p.value(); err != nil {
				return err
			}
			if string(p.data[start:p.pos]) != privateScope {
				scope = splice{start: start, end: p.pos, repl: []byte(privateScope)}
			} else {
				scope = splice{start: start, end: start}
			}
			continue
		}
		if foldsTo(key, scopeKeys) {
			// "CacheScope" would set the same field as cacheScope in encoding/json.
			return errRPCKeyCase
		}
		kind, isList := numListKinds, false
		for k := range numListKinds {
			if !lf.Kinds.Has(k) {
				continue
			}
			if string(key) == listKeys[k].result {
				kind, isList = k, true
				break
			}
			if foldsTo(key, resultKeyNames[k]) {
				return errRPCKeyCase
			}
		}
		if !isList || p.peek() != '[' {
			if err := p.value(); err != nil {
				return err
			}
			continue
		}
		listed = true
		if kind == ListTools && lf.Schemes != nil {
			if err := p.rewriteTools(out, lf); err != nil {
				return err
			}
			continue
		}
		s, removed, err := p.filterList(kind, lf)
		if err != nil {
			return err
		}
		if removed {
			*out = append(*out, s)
		}
	}
	if !listed {
		*out = (*out)[:mark]
		return nil
	}
	if scope.start < 0 {
		// The result holds the list's member, so a comma always follows.
		(*out)[mark].repl = cacheScopeMember
		return nil
	}
	// cacheScope is there: the first splice is not needed.
	*out = append((*out)[:mark], (*out)[mark+1:]...)
	if scope.end > scope.start {
		// In its place among the list's splices, which are in order and apart from it (a
		// list's may share a start among themselves, so no sort).
		i := mark
		for i < len(*out) && (*out)[i].start < scope.start {
			i++
		}
		*out = slices.Insert(*out, i, scope)
	}
	return nil
}

// filterList reads a list array of kind and returns the splice that replaces it with the
// entries lf allows, and whether any was removed.
func (p *jsonReader) filterList(kind ListKind, lf *ListFilter) (splice, bool, error) {
	start := p.pos
	kept := []byte{'['}
	removed := false
	err := p.array(func(int) error {
		p.skipSpace()
		es := p.pos
		name, named, err := p.entryKey(kind)
		if err != nil {
			return err
		}
		if named && lf.Allowed(kind, name) {
			if len(kept) > 1 {
				kept = append(kept, ',')
			}
			kept = append(kept, p.data[es:p.pos]...)
		} else {
			removed = true
		}
		return nil
	})
	if err != nil || !removed {
		return splice{}, false, err
	}
	return splice{start: start, end: p.pos, repl: append(kept, ']')}, true, nil
}

// entryKey reads a list entry and returns its member named key, when a string.
func (p *jsonReader) entryKey(kind ListKind) (string, bool, error) {
	key := listKeys[kind].entry
	if p.peek() != '{' {
		return "", false, p.value()
	}
	f, err := p.beginObject()
	if err != nil {
		return "", false, err
	}
	names := entryKeyNames[kind]
	name, named := "", false
	for {
		k, ok, err := p.nextMember(&f)
		if err != nil {
			return "", false, err
		}
		if !ok {
			return name, named, nil
		}
		if foldsTo(k, names) {
			return "", false, errRPCKeyCase
		}
		if string(k) == key && p.peek() == '"' {
			v, err := p.stringValue()
			if err != nil {
				return "", false, err
			}
			name, named = string(v), true
			continue
		}
		if err := p.value(); err != nil {
			return "", false, err
		}
	}
}
