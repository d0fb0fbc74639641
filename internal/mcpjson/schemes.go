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

// edit is a span of an entry to cut or replace: data[start:end].
type edit struct {
	start, end int
}

// schemesForms are the bytes the rewrite inserts for one securitySchemes value, built once
// per value and answer: tools of one list mostly share a few values.
type schemesForms struct {
	value []byte
	// top goes first in an entry with a _meta; topMeta first in one without (it adds one).
	top, topMeta []byte
	// meta goes first in an object _meta with other members (metaComma) or none (meta);
	// metaObject replaces a _meta that is no object.
	meta, metaComma, metaObject []byte
}

func newSchemesForms(v []byte) schemesForms {
	const key = `"securitySchemes":`
	// One allocation for every form: top (key v ,), the _meta member (,"_meta":{key v},),
	// the meta forms (key v ,) and the object ({key v}).
	b := make([]byte, 0, 5*len(key)+5*len(v)+32)
	b = append(append(append(b, key...), v...), ',')
	top := b[0:len(b):len(b)]
	b = append(append(append(append(b, `"_meta":{`...), key...), v...), "},"...)
	topMeta := b[0:len(b):len(b)]
	m := len(b)
	b = append(append(append(b, key...), v...), ',')
	metaComma := b[m:len(b):len(b)]
	meta := metaComma[: len(metaComma)-1 : len(metaComma)-1]
	o := len(b)
	b = append(append(append(append(b, '{'), key...), v...), '}')
	return schemesForms{value: v, top: top, topMeta: topMeta, meta: meta, metaComma: metaComma, metaObject: b[o:len(b):len(b)]}
}

// formsCache holds the forms of the few values of one answer, found by the identity of the
// value's bytes (Schemes returns shared values); a value not found is built anew.
type formsCache struct {
	n     int
	forms [8]schemesForms
}

func (c *formsCache) get(v []byte) *schemesForms {
	for i := range c.n {
		if f := &c.forms[i]; len(f.value) == len(v) && (len(v) == 0 || &f.value[0] == &v[0]) {
			return f
		}
	}
	if c.n == len(c.forms) {
		f := newSchemesForms(v)
		return &f
	}
	c.forms[c.n] = newSchemesForms(v)
	c.n++
	return &c.forms[c.n-1]
}

// rewriteTools reads a tools array and appends to out the splices that rewrite it: every
// tool kept carries the resource's securitySchemes (toolEdits), and the tools lf refuses
// (and entries without a string name) are cut out with one comma each. The entries' other
// bytes are not copied here: the answer is assembled once from the splices.
func (p *jsonReader) rewriteTools(out *[]splice, lf *ListFilter) error {
	var cache formsCache
	// prevEnd is where the previous entry ends, or -1 before the first; keptBefore says
	// whether an entry before this one stays. A removed entry after a kept one is cut with
	// the comma before it; a removed entry before any kept one with the comma after it.
	prevEnd, keptBefore := -1, false
	pendingLead := -1 // start of a removed entry before any kept one, cut up to the next entry
	err := p.array(func(int) error {
		p.skipSpace()
		es := p.pos
		if pendingLead >= 0 {
			*out = append(*out, splice{start: pendingLead, end: es})
			pendingLead = -1
		}
		mark := len(*out)
		kept, err := p.toolEdits(out, lf, &cache)
		if err != nil {
			return err
		}
		if !kept {
			*out = (*out)[:mark]
			if keptBefore {
				*out = append(*out, splice{start: prevEnd, end: p.pos})
			} else {
				pendingLead = es
			}
		}
		keptBefore = keptBefore || kept
		prevEnd = p.pos
		return nil
	})
	if err != nil {
		return err
	}
	if pendingLead >= 0 {
		// The last entry, and none before it stays: the array is left empty.
		*out = append(*out, splice{start: pendingLead, end: prevEnd})
	}
	return nil
}

// toolEdits reads a tool entry of a tools/list result and, when it is an object with a string
// name that lf allows, appends to out the splices that rewrite it with the securitySchemes
// lf.Schemes returns: its securitySchemes members (top level and in _meta) are cut out, and
// the resource's are put first in the entry and in _meta (a _meta that is no object is
// replaced by one, a missing one added). It reports whether the entry stays.
func (p *jsonReader) toolEdits(out *[]splice, lf *ListFilter, cache *formsCache) (bool, error) {
	if p.peek() != '{' {
		return false, p.value()
	}
	open := p.pos
	var (
		name      string
		named     bool
		drop      [2]edit // the server's securitySchemes, top level and in _meta
		nDrop     int
		metaOpen  = -1 // after the '{' of an object _meta
		metaOther bool // that _meta has members besides securitySchemes
		metaValue = edit{start: -1}
	)
	f, err := p.beginObject()
	if err != nil {
		return false, err
	}
	for {
		key, ks, ok, err := p.nextKey(&f)
		if err != nil {
			return false, err
		}
		if !ok {
			break
		}
		if foldsTo(key, entryKeyNames[ListTools]) || foldsTo(key, schemesKeys) || foldsTo(key, metaKeys) {
			return false, errRPCKeyCase
		}
		switch {
		case string(key) == "name" && p.peek() == '"':
			v, err := p.stringValue()
			if err != nil {
				return false, err
			}
			name, named = string(v), true
		case string(key) == "_meta" && p.peek() == '{':
			metaOpen = p.pos + 1
			mf, err := p.beginObject()
			if err != nil {
				return false, err
			}
			for {
				key, ks, ok, err := p.nextKey(&mf)
				if err != nil {
					return false, err
				}
				if !ok {
					break
				}
				if foldsTo(key, schemesKeys) {
					return false, errRPCKeyCase
				}
				if string(key) == "securitySchemes" {
					err = p.dropMember(&drop[nDrop], ks)
					nDrop++
				} else {
					metaOther = true
					err = p.value()
				}
				if err != nil {
					return false, err
				}
			}
		case string(key) == "_meta":
			p.skipSpace()
			vs := p.pos
			if err := p.value(); err != nil {
				return false, err
			}
			metaValue = edit{start: vs, end: p.pos}
		case string(key) == "securitySchemes":
			if err := p.dropMember(&drop[nDrop], ks); err != nil {
				return false, err
			}
			nDrop++
		default:
			if err := p.value(); err != nil {
				return false, err
			}
		}
	}
	if !named || !lf.Allowed(ListTools, name) {
		return false, nil
	}
	forms := cache.get(lf.Schemes(name))
	// The resource's securitySchemes first (and _meta, when the entry has none), then the
	// entry's own members with the edits: the entry has a name besides, so a member follows.
	var eb [4]splice
	edits := eb[:0]
	switch {
	case metaOpen >= 0:
		edits = append(edits, splice{start: open + 1, end: open + 1, repl: forms.top})
		m := forms.meta
		if metaOther {
			m = forms.metaComma
		}
		edits = append(edits, splice{start: metaOpen, end: metaOpen, repl: m})
	case metaValue.start >= 0:
		edits = append(edits, splice{start: open + 1, end: open + 1, repl: forms.top},
			splice{start: metaValue.start, end: metaValue.end, repl: forms.metaObject})
	default:
		edits = append(edits, splice{start: open + 1, end: open + 1, repl: forms.topMeta})
	}
	for _, d := range drop[:nDrop] {
		edits = append(edits, splice{start: d.start, end: d.end})
	}
	// By position; an insertion goes before a cut that starts where it does. At most four:
	// an insertion sort.
	for i := 1; i < len(edits); i++ {
		for j := i; j > 0 && spliceBefore(&edits[j], &edits[j-1]); j-- {
			edits[j], edits[j-1] = edits[j-1], edits[j]
		}
	}
	*out = append(*out, edits...)
	return true, nil
}

func spliceBefore(a, b *splice) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.end < b.end
}

// nextKey is nextMember that also returns the offset where the key starts, past the ','
// that separates it from the previous member.
func (p *jsonReader) nextKey(f *objFrame) ([]byte, int, bool, error) {
	p.skipSpace()
	ks := p.pos
	if !f.first && ks < len(p.data) && p.data[ks] == ',' {
		ks++
		for ks < len(p.data) && isJSONSpace(p.data[ks]) {
			ks++
		}
	}
	key, ok, err := p.nextMember(f)
	return key, ks, ok, err
}

// dropMember reads the value of the member whose key starts at ks and records in e the bytes
// that remove it with one of its commas: the one before it or, for the first member, the one
// after it.
func (p *jsonReader) dropMember(e *edit, ks int) error {
	// The comma before the key, if any, is the last non-space byte before ks.
	before := ks - 1
	for before >= 0 && isJSONSpace(p.data[before]) {
		before--
	}
	if err := p.value(); err != nil {
		return err
	}
	if before >= 0 && p.data[before] == ',' {
		*e = edit{start: before, end: p.pos}
	} else if p.peek() == ',' {
		*e = edit{start: ks, end: p.pos + 1}
	} else {
		*e = edit{start: ks, end: p.pos}
	}
	return nil
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
