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

// member is one member of an object being rewritten: its key (a view into the data, or into
// the reader's arena, which is not reset while the answer's outer object is open) and where
// its value lies in the data.
type member struct {
	key        []byte
	start, end int
}

// appendToolEntry reads a tool entry of a tools/list result and appends to dst the entry
// rewritten with the securitySchemes schemes(name) returns, when the entry is an object with
// a string name; keep decides, by name, whether it is appended at all. It returns dst and
// whether the entry was appended.
func (p *jsonReader) appendToolEntry(dst []byte, schemes func(name string) []byte, keep func(name string) bool) ([]byte, bool, error) {
	if p.peek() != '{' {
		return dst, false, p.value()
	}
	f, err := p.beginObject()
	if err != nil {
		return dst, false, err
	}
	var mbuf, metaBuf [16]member
	members, meta := mbuf[:0], metaBuf[:0]
	metaObject := false
	name, named := "", false
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil {
			return dst, false, err
		}
		if !ok {
			break
		}
		if foldsTo(key, entryKeyNames[ListTools]) || foldsTo(key, schemesKeys) || foldsTo(key, metaKeys) {
			return dst, false, errRPCKeyCase
		}
		p.skipSpace()
		m := member{key: key, start: p.pos}
		switch {
		case string(key) == "name" && p.peek() == '"':
			v, err := p.stringValue()
			if err != nil {
				return dst, false, err
			}
			name, named = string(v), true
		case string(key) == "_meta" && p.peek() == '{':
			metaObject = true
			if meta, err = p.readMeta(meta); err != nil {
				return dst, false, err
			}
		default:
			if err := p.value(); err != nil {
				return dst, false, err
			}
		}
		m.end = p.pos
		members = append(members, m)
	}
	if !named || !keep(name) {
		return dst, false, nil
	}
	value := schemes(name)
	dst = append(dst, '{')
	first := true
	wroteMeta := false
	for _, m := range members {
		if string(m.key) == "securitySchemes" {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, m.key)
		dst = append(dst, ':')
		if string(m.key) == "_meta" {
			dst = p.appendMeta(dst, metaObject, meta, value)
			wroteMeta = true
			continue
		}
		dst = append(dst, p.data[m.start:m.end]...)
	}
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, `"securitySchemes":`...)
	dst = append(dst, value...)
	if !wroteMeta {
		dst = append(dst, `,"_meta":`...)
		dst = p.appendMeta(dst, false, nil, value)
	}
	return append(dst, '}'), true, nil
}

// readMeta reads a tool's _meta object, appending its members to out.
func (p *jsonReader) readMeta(out []member) ([]member, error) {
	f, err := p.beginObject()
	if err != nil {
		return out, err
	}
	for {
		key, ok, err := p.nextMember(&f)
		if err != nil || !ok {
			return out, err
		}
		if foldsTo(key, schemesKeys) {
			return out, errRPCKeyCase
		}
		p.skipSpace()
		m := member{key: key, start: p.pos}
		if err := p.value(); err != nil {
			return out, err
		}
		m.end = p.pos
		out = append(out, m)
	}
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
