package mcpjson

// securitySchemes on the tools of a tools/list answer (MCP Apps per-tool authorization, the
// Apps SDK's per-tool securitySchemes): each tool kept in the list is written back with
// `securitySchemes` set, at its top level and in `_meta.securitySchemes` (where the Apps SDK
// reads it), to the value the resource computes from its own rules, replacing what the
// server said. The other members keep their bytes (members are rejoined with "," only).

// The tool keys the rewrite writes; their case variants are refused, as encoding/json-based
// clients would read them as the same field.
var (
	schemesKeys = []string{"securitySchemes"}
	metaKeys    = []string{"_meta"}
)

// member is one member of an object being rewritten: its decoded key and where its value
// lies in the data.
type member struct {
	key        []byte
	start, end int
}

// readMembers reads an object and returns its members. Keys are copied: the reader's key
// storage is reused once the object closes.
func (p *jsonReader) readMembers(visit func(key []byte) error) ([]member, error) {
	f, err := p.beginObject()
	if err != nil {
		return nil, err
	}
	var out []member
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return nil, err
		}
		if !ok {
			return out, nil
		}
		if visit != nil {
			if err := visit(key); err != nil {
				return nil, err
			}
		}
		p.skipSpace()
		m := member{key: append([]byte(nil), key...), start: p.pos}
		if err := p.value(); err != nil {
			return nil, err
		}
		m.end = p.pos
		out = append(out, m)
	}
}

// toolEntry reads a tool entry of a tools/list result and returns its name (when a string)
// and the entry rewritten with the securitySchemes schemes(name) returns. An entry that is
// not an object has no name, and is dropped by the caller.
func (p *jsonReader) toolEntry(schemes func(name string) []byte) (string, bool, []byte, error) {
	if p.peek() != '{' {
		return "", false, nil, p.value()
	}
	var metaMembers []member
	metaObject := false
	start := p.pos
	members, err := p.readMembers(func(key []byte) error {
		if foldsTo(key, entryKeyNames[ListTools]) || foldsTo(key, schemesKeys) || foldsTo(key, metaKeys) {
			return errRPCKeyCase
		}
		return nil
	})
	if err != nil {
		return "", false, nil, err
	}
	name, named := "", false
	for _, m := range members {
		switch string(m.key) {
		case "name":
			if p.data[m.start] == '"' {
				sub := readerPool.Get().(*jsonReader)
				sub.reset(p.data[m.start:m.end])
				sub.loneSurrogates = p.loneSurrogates
				v, err := sub.stringValue()
				if err == nil {
					name, named = string(v), true
				}
				sub.data = nil
				readerPool.Put(sub)
				if err != nil {
					return "", false, nil, err
				}
			}
		case "_meta":
			if p.data[m.start] == '{' {
				sub := readerPool.Get().(*jsonReader)
				sub.reset(p.data[:m.end])
				sub.loneSurrogates = p.loneSurrogates
				sub.pos = m.start
				metaMembers, err = sub.readMembers(func(key []byte) error {
					if foldsTo(key, schemesKeys) {
						return errRPCKeyCase
					}
					return nil
				})
				sub.data = nil
				readerPool.Put(sub)
				if err != nil {
					return "", false, nil, err
				}
				metaObject = true
			}
		}
	}
	if !named {
		return "", false, nil, nil
	}
	value := schemes(name)
	out := make([]byte, 0, p.pos-start+2*len(value)+32)
	out = append(out, '{')
	first := true
	sep := func() {
		if !first {
			out = append(out, ',')
		}
		first = false
	}
	wroteMeta := false
	for _, m := range members {
		switch string(m.key) {
		case "securitySchemes":
			continue
		case "_meta":
			sep()
			out = append(out, `"_meta":`...)
			out = p.appendMeta(out, metaObject, metaMembers, value)
			wroteMeta = true
			continue
		}
		sep()
		out = appendJSONString(out, m.key)
		out = append(out, ':')
		out = append(out, p.data[m.start:m.end]...)
	}
	sep()
	out = append(out, `"securitySchemes":`...)
	out = append(out, value...)
	if !wroteMeta {
		out = append(out, `,"_meta":`...)
		out = p.appendMeta(out, false, nil, value)
	}
	return name, true, append(out, '}'), nil
}

// appendMeta writes _meta with securitySchemes set: the server's other _meta members kept
// when it was an object, else an object of its own.
func (p *jsonReader) appendMeta(out []byte, object bool, members []member, value []byte) []byte {
	out = append(out, '{')
	if object {
		for _, m := range members {
			if string(m.key) == "securitySchemes" {
				continue
			}
			out = appendJSONString(out, m.key)
			out = append(out, ':')
			out = append(out, p.data[m.start:m.end]...)
			out = append(out, ',')
		}
	}
	out = append(out, `"securitySchemes":`...)
	out = append(out, value...)
	return append(out, '}')
}

// appendJSONString writes s, valid UTF-8, as a JSON string.
func appendJSONString(out, s []byte) []byte {
	const hexDigits = "0123456789abcdef"
	out = append(out, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}
